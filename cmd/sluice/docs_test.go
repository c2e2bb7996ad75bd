package main

// These tests tie what users read to the one source of defaults, the
// effective configuration: --help, docs/configuration.md and
// configs/example.yaml. A default changed in code, a field added to a
// Config type or a flag renamed fails here, naming the field, until the
// help text, the reference and the example say the same.

import (
	"bufio"
	"bytes"
	"encoding"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.yaml.in/yaml/v3"
)

var docsPath = filepath.Join("..", "..", "docs", "configuration.md")

// configField is one key of the configuration file, found by walking the
// yaml tags of the Config types.
type configField struct {
	path string // "timeouts.idle", "services[].queue.limit"
	typ  reflect.Type
	// section: a mapping or a list of mappings whose keys are fields of
	// their own ("pool", "services", "services[].queue").
	section bool
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// configFields lists every key of the file (sluiceConfig), sections before their keys.
func configFields() []configField {
	var out []configField
	var walk func(t reflect.Type, prefix string)
	walk = func(t reflect.Type, prefix string) {
		for i := range t.NumField() {
			sf := t.Field(i)
			name, opts, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
			if name == "-" || !sf.IsExported() {
				continue
			}
			if opts == "inline" {
				walk(sf.Type, prefix)
				continue
			}
			if name == "" {
				name = strings.ToLower(sf.Name) // yaml's own rule
			}
			path := prefix + name
			ft := sf.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			switch {
			case ft.Kind() == reflect.Struct && !reflect.PointerTo(ft).Implements(textUnmarshaler):
				out = append(out, configField{path, sf.Type, true})
				walk(ft, path+".")
			case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
				out = append(out, configField{path, sf.Type, true})
				walk(ft.Elem(), path+"[].")
			default:
				out = append(out, configField{path, sf.Type, false})
			}
		}
	}
	walk(reflect.TypeFor[sluiceConfig](), "")
	return out
}

// valueAt returns the value at path in cfg; "[]" is the list's first item.
func valueAt(cfg *sluiceConfig, path string) (reflect.Value, bool) {
	v := reflect.ValueOf(cfg).Elem()
	for _, seg := range strings.Split(path, ".") {
		name, isList := strings.CutSuffix(seg, "[]")
		for v.Kind() == reflect.Pointer {
			if v.IsNil() {
				return v, false
			}
			v = v.Elem()
		}
		f, found := fieldByTag(v, name)
		if !found {
			return v, false
		}
		v = f
		if isList {
			if v.Len() == 0 {
				return v, false
			}
			v = v.Index(0)
		}
	}
	return v, true
}

// fieldByTag finds the field of struct v whose yaml key is name, looking
// into inline fields too.
func fieldByTag(v reflect.Value, name string) (reflect.Value, bool) {
	for i := range v.NumField() {
		tag, opts, _ := strings.Cut(v.Type().Field(i).Tag.Get("yaml"), ",")
		if opts == "inline" {
			if f, ok := fieldByTag(v.Field(i), name); ok {
				return f, true
			}
			continue
		}
		if tag == name {
			return v.Field(i), true
		}
	}
	return v, false
}

// render shows a value as --print-config does.
func render(v reflect.Value) string {
	b, err := yaml.Marshal(v.Interface())
	if err != nil {
		return "<" + err.Error() + ">"
	}
	return strings.TrimSpace(string(b))
}

// effectiveDefaults is the effective configuration of the least a user can
// write: one service, one route and one TLS certificate (so that the lists
// have an item to hold their defaults), everything else left out. Every
// field it holds that the file does not set is the default that the help,
// the docs and the example must agree with.
func effectiveDefaults(t *testing.T) sluiceConfig {
	t.Helper()
	p := writeFile(t, "least.yaml", "services:\n  - name: a\n    backends: [http://127.0.0.1:1]\nroutes:\n  - service: a\n"+
		"tls:\n  certificates:\n    - cert_file: a.crt\n      key_file: a.key\n")
	cfg, err := effectiveConfig([]string{"--config", p})
	require.NoError(t, err)
	return cfg
}

// flagTargets maps each flag bound to a configuration field to the field's
// path, by the address the flag writes to.
func flagTargets(fs *flag.FlagSet, cfg *sluiceConfig) map[string]string {
	addrs := map[uintptr]string{}
	for _, f := range configFields() {
		if f.section || strings.Contains(f.path, "[]") {
			continue
		}
		if v, ok := valueAt(cfg, f.path); ok {
			addrs[v.Addr().Pointer()] = f.path
		}
	}
	out := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		rv := reflect.ValueOf(f.Value)
		if rv.Kind() == reflect.Struct && rv.NumField() > 0 { // flag.TextVar's value, boolPtrValue
			rv = rv.Field(0)
			if rv.Kind() == reflect.Interface {
				rv = rv.Elem()
			}
		}
		if rv.Kind() == reflect.Pointer {
			if path, ok := addrs[rv.Pointer()]; ok {
				out[f.Name] = path
			}
		}
	})
	return out
}

// --help shows, for every flag, the effective default of its field: the
// default printed by the flag package and the ones written into usage
// strings ("(0 = 1024)", "(default adaptive-lifo)") alike; a flag whose
// help shows no default has a zero default.
func TestHelpShowsEffectiveDefaults(t *testing.T) {
	var stdout, stderr bytes.Buffer
	require.Equal(t, exitOK, run([]string{"--help"}, &stdout, &stderr, nil))
	help := parseHelp(stdout.String())

	eff, err := effectiveConfig([]string{"--backend", "http://127.0.0.1:1"})
	require.NoError(t, err)
	var effOpts options
	effFlags := newFlagSet(&eff, &effOpts)
	n := 0
	effFlags.VisitAll(func(f *flag.Flag) {
		n++
		want := f.Value.String()
		shown, ok := help[f.Name]
		if !ok {
			t.Errorf("--%s: not in --help", f.Name)
			return
		}
		if shown == "" {
			switch want {
			case "", "0", "0s", "false":
			default:
				t.Errorf("--%s: --help shows no default, the effective default is %q", f.Name, want)
			}
			return
		}
		// Read the shown default back through the flag itself, so that
		// "1m0s" and "60s" or "adaptive" and "" compare by value.
		var c sluiceConfig
		var o options
		fs := newFlagSet(&c, &o)
		if err := fs.Set(f.Name, shown); err != nil {
			t.Errorf("--%s: --help shows default %q, which the flag does not accept: %v", f.Name, shown, err)
			return
		}
		if got := fs.Lookup(f.Name).Value.String(); got != want {
			t.Errorf("--%s: --help shows default %q, the effective default is %q", f.Name, shown, want)
		}
	})
	require.Positive(t, n)
}

var (
	reHelpFlag    = regexp.MustCompile(`^  --([a-z0-9-]+)`)
	reHelpDefault = regexp.MustCompile(`\((?:default |0 = )("(?:[^"\\]|\\.)*"|[^()]*)\)`)
)

// parseHelp returns each flag's default as --help shows it ("" for none).
func parseHelp(out string) map[string]string {
	usage := map[string]string{}
	var name string
	for _, line := range strings.Split(out, "\n") {
		if m := reHelpFlag.FindStringSubmatch(line); m != nil {
			name = m[1]
			usage[name] = ""
		} else if name != "" && strings.HasPrefix(line, "    \t") {
			usage[name] += " " + strings.TrimPrefix(line, "    \t")
		}
	}
	defaults := map[string]string{}
	for name, u := range usage {
		def := ""
		if all := reHelpDefault.FindAllStringSubmatch(u, -1); all != nil {
			def = all[len(all)-1][1]
			if s, err := strconv.Unquote(def); err == nil {
				def = s
			}
		}
		defaults[name] = def
	}
	return defaults
}

// docRow is one row of a reference table in docs/configuration.md.
type docRow struct {
	path  string   // the key with its section: "pool.max_conns"
	flags []string // the flags the row names
	def   string   // the Default cell
	line  int
}

// docsReference is what docs/configuration.md says about the keys and
// flags.
type docsReference struct {
	rows map[string]docRow
	// aliases maps a section documented under another's table to it:
	// "services[].pool" -> "pool".
	aliases map[string]string
	// other are the flags of "Flags that are not configuration".
	other []string
	all   map[string]int // every flag a table names, and the line
}

var (
	reBackticked = regexp.MustCompile("`([^`]*)`")
	reFlagName   = regexp.MustCompile(`--([a-z][a-z0-9-]*)`)
)

func readDocs(t *testing.T) docsReference {
	t.Helper()
	f, err := os.Open(docsPath)
	require.NoError(t, err)
	defer f.Close()
	d := docsReference{rows: map[string]docRow{}, aliases: map[string]string{}, all: map[string]int{}}
	var chapter, section string
	var cols []string // the current table's column names; nil outside a table
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := sc.Text()
		switch {
		case strings.HasPrefix(text, "## "):
			chapter, section, cols = strings.TrimPrefix(text, "## "), "", nil
			continue
		case strings.HasPrefix(text, "### "):
			cols = nil
			heading := strings.TrimPrefix(text, "### ")
			names := reBackticked.FindAllStringSubmatch(heading, -1)
			section = ""
			if len(names) > 0 {
				section = names[0][1]
				for _, a := range names[1:] {
					d.aliases[a[1]] = section
				}
			}
			continue
		case !strings.HasPrefix(text, "|"):
			cols = nil
			continue
		}
		cells := splitRow(text)
		if cols == nil {
			cols = cells // the header row
			continue
		}
		if strings.HasPrefix(cells[0], "---") {
			continue
		}
		cell := func(name string) string {
			for i, c := range cols {
				if c == name && i < len(cells) {
					return cells[i]
				}
			}
			return ""
		}
		var flags []string
		for _, m := range reFlagName.FindAllStringSubmatch(strings.Join(cells[:len(cells)-1], " "), -1) {
			flags = append(flags, m[1])
			d.all[m[1]] = line
		}
		switch chapter {
		case "Reference":
			key := strings.Trim(cell("Key"), "`")
			path := key
			if section != "" {
				path = section + "." + key
			}
			if _, dup := d.rows[path]; dup {
				t.Errorf("%s:%d: %s documented twice", docsPath, line, path)
			}
			d.rows[path] = docRow{path: path, flags: flags, def: cell("Default"), line: line}
		case "Flags that are not configuration":
			d.other = append(d.other, flags...)
		}
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, d.rows, "no reference tables found in %s", docsPath)
	return d
}

// splitRow splits a Markdown table row into trimmed cells; "\|" is a
// literal bar inside a cell.
func splitRow(row string) []string {
	row = strings.ReplaceAll(strings.Trim(strings.TrimSpace(row), "|"), `\|`, "\x00")
	cells := strings.Split(row, "|")
	for i, c := range cells {
		cells[i] = strings.ReplaceAll(strings.TrimSpace(c), "\x00", "|")
	}
	return cells
}

// canonical is the path under which a key is documented, through section
// aliases: services[].pool.max_conns is documented as pool.max_conns.
func (d docsReference) canonical(path string) string {
	for alias, section := range d.aliases {
		if rest, ok := strings.CutPrefix(path, alias+"."); ok {
			return d.canonical(section + "." + rest)
		}
	}
	return path
}

// row finds the documentation of a key.
func (d docsReference) row(path string) (docRow, bool) {
	r, ok := d.rows[d.canonical(path)]
	return r, ok
}

// once reports whether key is seen for the first time, so that a key
// reached through an alias is reported once.
type once map[string]bool

func (o once) first(key string) bool {
	if o[key] {
		return false
	}
	o[key] = true
	return true
}

// Every key of the Config types is documented, and every documented key
// exists.
func TestDocsDocumentEveryConfigKey(t *testing.T) {
	d := readDocs(t)
	known := map[string]bool{}
	reported := once{}
	for _, f := range configFields() {
		known[f.path] = true
		if _, ok := d.row(f.path); !ok && reported.first(d.canonical(f.path)) {
			t.Errorf("%s: config field %s (%s) is not documented", docsPath, d.canonical(f.path), f.typ)
		}
	}
	for _, r := range d.rows {
		if !known[r.path] {
			t.Errorf("%s:%d: documents %s, which is not a configuration key", docsPath, r.line, r.path)
		}
	}
}

// The Default column is the effective default: a value in backticks first
// in the cell is read as the field's type and must equal it; "—" marks a
// value the user must give; anything else ("none", "any") says there is no
// default, so the field's default must be its zero value.
func TestDocsDefaultsAreEffectiveDefaults(t *testing.T) {
	d := readDocs(t)
	eff := effectiveDefaults(t)
	checked := once{}
	for _, f := range configFields() {
		r, ok := d.row(f.path)
		if !ok || f.section || !checked.first(r.path) {
			// Not documented: TestDocsDocumentEveryConfigKey says so.
			// Sections have their own tables. services[].queue.* takes
			// the same defaults as queue.*: checked once.
			continue
		}
		v, ok := valueAt(&eff, f.path)
		require.True(t, ok, f.path)
		def := strings.TrimSpace(r.def)
		switch {
		case strings.HasPrefix(def, "—"):
		case strings.HasPrefix(def, "`"):
			lit := reBackticked.FindStringSubmatch(def)[1]
			got := reflect.New(v.Type())
			if err := yaml.Unmarshal([]byte(lit), got.Interface()); err != nil {
				t.Errorf("%s:%d: %s: documented default `%s` is not a %s: %v", docsPath, r.line, r.path, lit, v.Type(), err)
				continue
			}
			if !reflect.DeepEqual(got.Elem().Interface(), v.Interface()) {
				t.Errorf("%s:%d: %s: documented default `%s`, effective default %s", docsPath, r.line, r.path, lit, render(v))
			}
		default:
			if !v.IsZero() {
				t.Errorf("%s:%d: %s: documented as %q (no default), effective default %s", docsPath, r.line, r.path, def, render(v))
			}
		}
	}
}

// The Flag column names the flag that sets the key, and every flag is
// documented: with the key it sets, or among the flags that are not
// configuration.
func TestDocsNameEveryFlag(t *testing.T) {
	d := readDocs(t)
	var cfg sluiceConfig
	var opts options
	fs := newFlagSet(&cfg, &opts)
	targets := flagTargets(fs, &cfg)
	require.NotEmpty(t, targets)

	for name, line := range d.all {
		if fs.Lookup(name) == nil && name != "help" {
			t.Errorf("%s:%d: --%s is not a flag", docsPath, line, name)
		}
	}
	fs.VisitAll(func(f *flag.Flag) {
		if path, ok := targets[f.Name]; ok {
			r, ok := d.row(path)
			if ok && !contains(r.flags, f.Name) {
				t.Errorf("%s:%d: --%s sets %s, but the row for %s names %v", docsPath, r.line, f.Name, path, path, r.flags)
			}
			return
		}
		if _, ok := d.all[f.Name]; !ok {
			t.Errorf("%s: --%s is not documented", docsPath, f.Name)
		}
	})
	for _, r := range d.rows {
		for _, name := range r.flags {
			if path, ok := targets[name]; ok && path != r.path {
				t.Errorf("%s:%d: the row for %s names --%s, which sets %s", docsPath, r.line, r.path, name, path)
			}
		}
	}
	for _, name := range d.other {
		if _, ok := targets[name]; ok {
			t.Errorf("%s: --%s is listed among the flags that are not configuration, but sets %s", docsPath, name, targets[name])
		}
	}
}

// configs/example.yaml is a configuration Sluice accepts, every key in it
// is a configuration key, and it shows every top-level section.
func TestExampleConfig(t *testing.T) {
	_, err := effectiveConfig([]string{"--config", examplePath})
	require.NoError(t, err, "the example must be a configuration Sluice accepts")

	data, err := os.ReadFile(examplePath)
	require.NoError(t, err)
	var doc yaml.Node
	require.NoError(t, yaml.Unmarshal(data, &doc))
	fields := map[string]configField{}
	for _, f := range configFields() {
		fields[f.path] = f
	}
	reIndex := regexp.MustCompile(`\[\d+\]`)
	seen := map[string]bool{}
	walk(doc.Content[0], "", func(path string, k, v *yaml.Node) bool {
		if k == nil {
			return true
		}
		p := reIndex.ReplaceAllString(path, "[]")
		seen[p] = true
		if _, ok := fields[p]; ok {
			return true
		}
		// Keys inside a mapping-valued field: headers, class_timeout, ...
		for parent := p; strings.Contains(parent, "."); {
			parent = parent[:strings.LastIndex(parent, ".")]
			if f, ok := fields[parent]; ok && !f.section {
				return true
			}
		}
		t.Errorf("%s:%d: %s is not a configuration key", examplePath, k.Line, p)
		return true
	})
	var missing []string
	for _, f := range configFields() {
		if !strings.Contains(f.path, ".") && !seen[f.path] {
			missing = append(missing, f.path)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("%s does not show the top-level keys %v", examplePath, missing)
	}
}
