// Package buildinfo says which build a binary is, for the --version flag of
// every Sluice command.
//
// Everything comes from what the Go toolchain embeds in the binary
// (runtime/debug.ReadBuildInfo): the module path and version, the VCS
// commit the build was made from and whether the tree had uncommitted
// changes, and the Go release. Nothing is injected at link time, so a plain
// `go build` or `go install` reports the same as `make build`, and there is
// no version constant to forget to bump.
//
// What the toolchain did not record is shown as "unknown" rather than left
// out, so the line always has the same fields in the same order: a build
// from a source tarball, with -buildvcs=false, or inside a container without
// the .git directory has no commit, and a bug report should say so instead
// of looking as if the field had been cut off.
package buildinfo
