package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxConfigBytes bounds a configuration file: anything larger is a mistake
// (a log file passed by accident), not a configuration.
const maxConfigBytes = 4 << 20

// configFile is a decoded configuration file. The node tree is kept so that
// errors found later (by Validate, after flags were applied) can still be
// pointed at a line of the file.
type configFile struct {
	name string
	cfg  sluiceConfig
	root *yaml.Node // the document's top-level mapping; nil for an empty file
}

// loadConfigFile reads and strictly decodes the file at path. It does not
// validate: flags may still change the result.
func loadConfigFile(path string) (*configFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxConfigBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > maxConfigBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxConfigBytes)
	}
	return parseConfig(path, data)
}

// parseConfig decodes data strictly: unknown keys, values of the wrong type
// and extra documents are errors, each named by its path in the file and
// its line.
func parseConfig(name string, data []byte) (*configFile, error) {
	cf := &configFile{name: name}

	// The node tree first: it locates errors, and a syntax error is best
	// reported before anything else.
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: %s", name, cleanYAMLError(err.Error()))
	}
	if doc.Kind == 0 || len(doc.Content) == 0 || doc.Content[0].Tag == "!!null" {
		return nil, fmt.Errorf("%s: empty configuration", name)
	}
	cf.root = doc.Content[0]
	if cf.root.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%s: line %d: the configuration must be a mapping (key: value), not %s",
			name, cf.root.Line, kindName(cf.root))
	}

	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cf.cfg); err != nil {
		return nil, cf.decodeError(err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err != io.EOF {
		line := extra.Line
		if err != nil {
			return nil, fmt.Errorf("%s: %s", name, cleanYAMLError(err.Error()))
		}
		return nil, fmt.Errorf("%s: line %d: a second YAML document; a configuration is one document", name, line)
	}
	return cf, nil
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("the value %q", n.Value)
	default:
		return "a " + strings.TrimPrefix(n.Tag, "!!")
	}
}

func cleanYAMLError(s string) string {
	return strings.TrimPrefix(s, "yaml: ")
}

var (
	// "line 7: field bakends not found in type proxy.ServiceConfig"
	reUnknownField = regexp.MustCompile(`^line (\d+): field (.+) not found in type (\S+)$`)
	// "line 9: cannot unmarshal !!str `abc` into time.Duration"
	reTypeMismatch = regexp.MustCompile("^line (\\d+): cannot unmarshal (\\S+) `(.*)` into (\\S+)$")
	// "line 1: cannot unmarshal !!seq into string"
	reKindMismatch = regexp.MustCompile(`^line (\d+): cannot unmarshal !!(\w+) into (\S+)$`)
	// The first Go-quoted string in a message.
	reQuoted = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	// "line 3: mapping key "x" already defined at line 2"
	reLine = regexp.MustCompile(`^line (\d+): (.*)$`)
)

// decodeError rewrites yaml's decoding errors so that each names the field
// by its path in the file, the bad value and the line.
func (cf *configFile) decodeError(err error) error {
	var te *yaml.TypeError
	if !errors.As(err, &te) {
		// A value's own parser (UnmarshalText) failed; yaml passes its
		// error on without a position. The error quotes the bad value, so
		// find the one place in the file that holds it.
		msg := cleanYAMLError(err.Error())
		if m := reQuoted.FindString(msg); m != "" {
			if v, uerr := strconv.Unquote(m); uerr == nil {
				if path, line, ok := cf.findUniqueScalar(v); ok {
					return fmt.Errorf("%s: %s: %s (line %d)", cf.name, path, msg, line)
				}
			}
		}
		return fmt.Errorf("%s: %s", cf.name, msg)
	}
	msgs := make([]string, 0, len(te.Errors))
	for _, e := range te.Errors {
		msgs = append(msgs, cf.describe(e))
	}
	return fmt.Errorf("%s: %s", cf.name, strings.Join(msgs, "; "))
}

func (cf *configFile) describe(e string) string {
	if m := reUnknownField.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		path, ok := cf.findKey(line, m[2])
		if !ok {
			path = m[2]
		}
		return fmt.Sprintf("%s: unknown key (line %d)", path, line)
	}
	if m := reTypeMismatch.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		want := typeName(m[4])
		if path, ok := cf.findValue(line, m[3]); ok {
			return fmt.Sprintf("%s: invalid value %q: want %s (line %d)", path, m[3], want, line)
		}
		return fmt.Sprintf("line %d: invalid value %q: want %s", line, m[3], want)
	}
	if m := reKindMismatch.FindStringSubmatch(e); m != nil {
		line, _ := strconv.Atoi(m[1])
		got := map[string]string{"seq": "a list", "map": "a mapping"}[m[2]]
		if got == "" {
			got = "!!" + m[2]
		}
		want := typeName(m[3])
		if path, ok := cf.findCollection(line); ok {
			return fmt.Sprintf("%s: want %s, got %s (line %d)", path, want, got, line)
		}
		return fmt.Sprintf("line %d: want %s, got %s", line, want, got)
	}
	return e
}

// typeName says in a user's words what a Go type expects.
func typeName(goType string) string {
	switch goType {
	case "time.Duration":
		return "a duration such as 500ms, 10s or 1m"
	case "int", "int64", "int32", "uint", "uint64", "uint32":
		return "an integer"
	case "float64", "float32":
		return "a number"
	case "bool":
		return "true or false"
	case "string":
		return "a string"
	}
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["):
		return "a mapping"
	}
	return "a " + goType
}

// walk calls fn for every mapping entry and sequence item under n with the
// entry's path ("services[1].backends[0]"); fn returns false to stop.
func walk(n *yaml.Node, path string, fn func(path string, key, val *yaml.Node) bool) bool {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if !fn(p, k, v) || !walk(v, p, fn) {
				return false
			}
		}
	case yaml.SequenceNode:
		for i, v := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			if !fn(p, nil, v) || !walk(v, p, fn) {
				return false
			}
		}
	}
	return true
}

func (cf *configFile) findKey(line int, key string) (string, bool) {
	var found string
	walk(cf.root, "", func(p string, k, _ *yaml.Node) bool {
		if k != nil && k.Line == line && k.Value == key {
			found = p
			return false
		}
		return true
	})
	return found, found != ""
}

func (cf *configFile) findValue(line int, value string) (string, bool) {
	var found string
	walk(cf.root, "", func(p string, _, v *yaml.Node) bool {
		if v.Line == line && v.Value == value {
			found = p
			return false
		}
		return true
	})
	return found, found != ""
}

// findUniqueScalar finds the key or value that is v, if exactly one is.
func (cf *configFile) findUniqueScalar(v string) (path string, line int, ok bool) {
	n := 0
	walk(cf.root, "", func(p string, k, val *yaml.Node) bool {
		switch {
		case val.Kind == yaml.ScalarNode && val.Value == v:
			path, line = p, val.Line
			n++
		case k != nil && k.Value == v:
			path, line = p, k.Line
			n++
		}
		return true
	})
	return path, line, n == 1
}

func (cf *configFile) findCollection(line int) (string, bool) {
	var found string
	walk(cf.root, "", func(p string, _, v *yaml.Node) bool {
		// The last match on the line is the innermost: in
		// "headers: {X: [1]}" the list, not the mapping around it.
		if v.Line == line && v.Kind != yaml.ScalarNode {
			found = p
		}
		return true
	})
	return found, found != ""
}

// rePath is the field path that Validate messages start with:
// "services[1].backends[0]: invalid URL ...".
var rePath = regexp.MustCompile(`^([A-Za-z0-9_]+(?:\[\d+\])*(?:\.[A-Za-z0-9_-]+(?:\[\d+\])*)*): `)

// lineOf returns the line of the value at path, or 0 when the file does not
// set it (a default or a flag put it there).
func (cf *configFile) lineOf(path string) int {
	if cf == nil || cf.root == nil {
		return 0
	}
	line := 0
	walk(cf.root, "", func(p string, k, v *yaml.Node) bool {
		if p == path {
			line = v.Line
			if k != nil {
				line = k.Line // a block value starts on the next line
			}
			return false
		}
		return true
	})
	return line
}

// validationError presents an error from proxy.Config.Validate: prefixed
// with the file name and, when the file sets the offending field, its line.
func validationError(cf *configFile, err error) error {
	msg := err.Error()
	if cf == nil {
		return fmt.Errorf("invalid configuration: %s", msg)
	}
	// Nested Validate methods prefix their own paths: "services[1].queue:
	// limit_max: ..." is the field services[1].queue.limit_max. Point at
	// the innermost field the file sets.
	line, path, rest := 0, "", msg
	for {
		m := rePath.FindStringSubmatch(rest)
		if m == nil {
			break
		}
		if path != "" {
			path += "."
		}
		path += m[1]
		rest = rest[len(m[0]):]
		if l := cf.lineOf(path); l > 0 {
			line = l
		}
	}
	if line > 0 {
		return fmt.Errorf("%s: %s (line %d)", cf.name, msg, line)
	}
	return fmt.Errorf("%s: %s", cf.name, msg)
}
