package web

import (
	"encoding/json"
	"reflect"
	"testing"
)

// FuzzPickupRequest: a body either is refused or decodes to a request that encodes and decodes
// back to itself; nothing panics.
func FuzzPickupRequest(f *testing.F) {
	for _, s := range []string{
		`{"csrf":"x","password":"open sesame"}`,
		`{"csrf":"x","public_key":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`,
		`{"csrf":"x","cod_text":"certmail-evidence/1\ntype COD-NSR\n","signature":"AQID"}`,
		`{"csrf":"x"} {"csrf":"y"}`,
		`{"csrf":"x","colour":"red"}`,
		`{"signature":"not base64"}`,
		`[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		p, err := decodePickupRequest(body)
		if err != nil {
			if !reflect.DeepEqual(p, pickupRequest{}) {
				t.Fatalf("a refused body left a request behind: %+v", p)
			}
			return
		}
		enc, err := json.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodePickupRequest(enc)
		if err != nil || !reflect.DeepEqual(again, p) {
			t.Fatalf("%s decodes to %+v, which encodes to %s and decodes to %+v, %v", body, p, enc, again, err)
		}
	})
}
