package config

import (
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestExampleIsDefault(t *testing.T) {
	t.Parallel()
	c, err := decode([]byte(Example()))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("Example() loads as\n%+v\nwant Default()\n%+v", c, Default())
	}
}

var keyLineRE = regexp.MustCompile(`^(# )?([a-z_]+) = `)

// TestExampleDocumentsEveryKey holds Example to the Config struct: every key appears, set or
// commented out, in its table, and no key appears that Config does not have.
func TestExampleDocumentsEveryKey(t *testing.T) {
	t.Parallel()
	documented := map[string]bool{}
	table := ""
	for _, line := range strings.Split(Example(), "\n") {
		if strings.HasPrefix(line, "[") {
			table = strings.Trim(line, "[]")
			documented[table] = true
			continue
		}
		if m := keyLineRE.FindStringSubmatch(line); m != nil {
			key := m[2]
			if table != "" {
				key = table + "." + key
			}
			if documented[key] {
				t.Errorf("%s documented twice", key)
			}
			documented[key] = true
		}
	}
	known := knownKeys()
	for k := range known {
		if !documented[k] {
			t.Errorf("Example does not document %s", k)
		}
	}
	for k := range documented {
		if !known[k] {
			t.Errorf("Example documents %s, which Config does not have", k)
		}
	}
}

// TestExampleCommentedDefaults uncomments the derived defaults Example shows and checks that
// they are what Default derives.
func TestExampleCommentedDefaults(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	n := 0
	for _, line := range strings.Split(Example(), "\n") {
		if keyLineRE.MatchString(line) && strings.HasPrefix(line, "# ") {
			line = strings.TrimPrefix(line, "# ")
			n++
		}
		b.WriteString(line + "\n")
	}
	if n == 0 {
		t.Fatal("no commented defaults found")
	}
	c, err := decode([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	// tls is shown as it would be with a smarthost; mode "mx" has none.
	if c.Outbound.TLS != TLSStartTLS {
		t.Errorf("outbound.tls shown as %q", c.Outbound.TLS)
	}
	c.Outbound.TLS = ""
	if !reflect.DeepEqual(c, Default()) {
		t.Fatalf("uncommented Example loads as\n%+v\nwant Default()\n%+v", c, Default())
	}
}
