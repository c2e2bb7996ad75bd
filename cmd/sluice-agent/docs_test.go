package main

// docs/agent.md is the reference users read: every flag and every field of
// the JSON document must be in it, so that a flag or field added here and
// not there fails the build.

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/sluiceproxy/sluice/monitor/agent"
)

func readAgentDoc(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "agent.md"))
	require.NoError(t, err)
	return string(b)
}

func TestDocsListEveryFlag(t *testing.T) {
	doc := readAgentDoc(t)
	newFlagSet(&options{}).VisitAll(func(f *flag.Flag) {
		assert.Contains(t, doc, "`--"+f.Name, "docs/agent.md lacks --%s", f.Name)
	})
}

func TestDocsListEveryField(t *testing.T) {
	doc := readAgentDoc(t)
	for _, typ := range []reflect.Type{reflect.TypeOf(agent.Load{}), reflect.TypeOf(agent.Target{})} {
		for i := range typ.NumField() {
			name, _, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			assert.Contains(t, doc, "`"+name+"`", "docs/agent.md lacks the field %s of %s", name, typ.Name())
		}
	}
}
