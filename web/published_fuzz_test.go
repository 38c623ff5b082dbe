package web

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"certmail/api"
)

// FuzzPublication: the body of POST /api/v1/published either is refused or decodes to a
// publication that encodes and decodes back to itself; nothing panics.
func FuzzPublication(f *testing.F) {
	for _, s := range []string{
		`{"request":"certmail-evidence/1\ntype SR-REQ\n","key":"QkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkJCQkI="}`,
		`{"request":"r","key_record":"k","key":"AA=="}`,
		`{"request":"r","key":"!!"}`,
		`{"request":"r"} {}`,
		`{"request":"r","colour":"red"}`,
		`null`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		var p api.Publication
		if err := decodeStrict(body, &p); err != nil {
			return
		}
		enc, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		var again api.Publication
		if err := decodeStrict(enc, &again); err != nil || !reflect.DeepEqual(normal(again), normal(p)) {
			t.Fatalf("%q decodes to %+v, which encodes to %s and decodes to %+v, %v", body, p, enc, again, err)
		}
	})
}

// normal makes an empty key and an absent one the same, as JSON does.
func normal(p api.Publication) api.Publication {
	if len(p.Key) == 0 {
		p.Key = nil
	}
	p.Key = bytes.Clone(p.Key)
	return p
}
