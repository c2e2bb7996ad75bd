// Package testbin builds a command of this module for tests that run it as
// users do (the end-to-end tests of cmd/sluice, the deployment files'
// tests in configs/): one go build into a temporary directory per test
// binary, from TestMain, so that every test of the package runs the same
// build and none builds it again.
package testbin
