package config

import (
	"bytes"
	"encoding"
	"errors"
	"fmt"
	"os"
	"reflect"
	"strings"

	"github.com/BurntSushi/toml"
)

// Load reads the configuration file at path, applies the defaults to every field it leaves out
// and validates the result. Load("") returns Default().
func Load(path string) (Config, error) {
	if path == "" {
		return Default(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	c, err := decode(data)
	if err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	return c, nil
}

// decode applies a TOML document to the defaults, strictly, without validating the result.
func decode(data []byte) (Config, error) {
	c := base()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&c)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			if pe.LastKey != "" {
				return Config{}, fmt.Errorf("line %d: %s: %s", pe.Position.Line, pe.LastKey, pe.Message)
			}
			return Config{}, fmt.Errorf("line %d: %s", pe.Position.Line, pe.Message)
		}
		return Config{}, errors.New(strings.TrimPrefix(err.Error(), "toml: "))
	}
	if err := checkKeys(md, data); err != nil {
		return Config{}, err
	}
	c.resolve()
	return c, nil
}

// knownKeys lists every key Config has, tables included, as toml.Key.String writes them.
func knownKeys() map[string]bool {
	keys := map[string]bool{}
	var walk func(prefix string, t reflect.Type)
	walk = func(prefix string, t reflect.Type) {
		for f := range t.Fields() {
			name := f.Tag.Get("toml")
			if name == "" || name == "-" {
				continue
			}
			key := prefix + name
			keys[key] = true
			if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(textUnmarshaler) {
				walk(key+".", f.Type)
			}
		}
	}
	walk("", reflect.TypeFor[Config]())
	return keys
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// checkKeys refuses keys Config does not have. The TOML decoder ignores them, and matches
// keys to fields ignoring case; a configuration must spell every key exactly.
func checkKeys(md toml.MetaData, data []byte) error {
	known := knownKeys()
	const maxReported = 10 // each costs a decoding of the file
	var errs []error
	var reported []toml.Key
	more := 0
	for _, k := range md.Keys() {
		if known[k.String()] || under(k, reported) {
			continue
		}
		if len(reported) == maxReported {
			more++
			continue
		}
		reported = append(reported, k)
		msg := fmt.Sprintf("unknown key %q", k.String())
		if line := keyLine(data, k); line > 0 {
			msg = fmt.Sprintf("line %d: %s", line, msg)
		}
		if s := suggest(k.String(), known); s != "" {
			msg += fmt.Sprintf(" (did you mean %q?)", s)
		}
		errs = append(errs, errors.New(msg))
	}
	if more > 0 {
		errs = append(errs, fmt.Errorf("and %d more unknown keys", more))
	}
	return errors.Join(errs...)
}

// under reports whether k is one of keys or inside one of them.
func under(k toml.Key, keys []toml.Key) bool {
	for _, p := range keys {
		if len(p) <= len(k) && reflect.DeepEqual([]string(p), []string(k[:len(p)])) {
			return true
		}
	}
	return false
}

// keyLine finds the line of key in data, or returns 0. MetaData does not export positions,
// but a decoding error does: decode into a struct whose only field, at key, refuses any value.
func keyLine(data []byte, key toml.Key) int {
	typ := reflect.TypeFor[refuse]()
	for i := len(key) - 1; i >= 0; i-- {
		if strings.ContainsAny(key[i], "\"\\`") {
			return 0
		}
		typ = reflect.StructOf([]reflect.StructField{{
			Name: "F",
			Type: typ,
			Tag:  reflect.StructTag(`toml:"` + key[i] + `"`),
		}})
	}
	_, err := toml.Decode(string(data), reflect.New(typ).Interface())
	var pe toml.ParseError
	if errors.As(err, &pe) && pe.Message == errRefused.Error() && pe.LastKey == key.String() {
		return pe.Position.Line
	}
	return 0
}

var errRefused = errors.New("config: probe refused the value")

type refuse struct{}

func (refuse) UnmarshalTOML(any) error { return errRefused }

// suggest returns the known key the user probably meant: the same name in another table, or
// one a couple of typing mistakes away.
func suggest(key string, known map[string]bool) string {
	if len(key) > 100 {
		return ""
	}
	last := key[strings.LastIndexByte(key, '.')+1:]
	moved, best, bestDist := "", "", 4
	for k := range known {
		if k != key && k[strings.LastIndexByte(k, '.')+1:] == last && (moved == "" || k < moved) {
			moved = k
		}
		d := editDistance(strings.ToLower(key), k)
		if strings.HasPrefix(k, strings.ToLower(key)) {
			d = min(d, 1) // a name cut short
		}
		if d < bestDist || d == bestDist && k < best {
			best, bestDist = k, d
		}
	}
	if moved != "" {
		return moved
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
