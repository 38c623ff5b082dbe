package config_test

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/BurntSushi/toml"

	"certmail/config"
)

// FuzzLoad: any file either fails to load or gives a configuration that validates and that
// loads back unchanged once written out.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.toml")
	if len(files) == 0 {
		f.Fatal("no testdata/*.toml seeds")
	}
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(config.Example()))
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		path := filepath.Join(dir, "c.toml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(path)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load returned a configuration that does not validate: %v", err)
		}
		var buf bytes.Buffer
		if err := toml.NewEncoder(&buf).Encode(c); err != nil {
			t.Fatalf("encode: %v", err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := config.Load(path)
		if err != nil {
			t.Fatalf("written configuration does not load: %v\n%s", err, buf.Bytes())
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("written configuration loads differently:\n%+v\n%+v", c, again)
		}
	})
}
