package api

import (
	"encoding/json"
	"testing"
)

// TestWireNames pins the JSON of every document: the names clients rely on, and which fields an
// empty value leaves out. A failure here is a change of the API, not of the code.
func TestWireNames(t *testing.T) {
	for _, c := range []struct {
		doc  any
		want string
	}{
		{Message{}, `{"to":null}`},
		{Message{To: []string{"b@b.example"}, Subject: "s", Text: "t", Attachments: []Attachment{{Name: "a.pdf", ContentType: "application/pdf", Data: []byte{1}}},
			Mode: "cem", Deadline: "7d", Receipt: "short", Notify: "n", Password: "p", Hint: "h"},
			`{"to":["b@b.example"],"subject":"s","text":"t","attachments":[{"name":"a.pdf","content_type":"application/pdf","data":"AQ=="}],"mode":"cem","deadline":"7d","receipt":"short","notify":"n","password":"p","hint":"h"}`},
		{Submitted{}, `{"submission":"","messages":null}`},
		{Posted{}, `{"label":"","recipient":"","cop":"","status_url":"","bundle_url":""}`},
		{Status{}, `{"label":"","submission":"","sender":"","recipient":"","subject":"","mode":"","state":"","submitted":"","updated":"","deadline":"","size":0,"content":"","commitment":"","retrievals":0,"events":null,"bundle_url":""}`},
		{Event{}, `{"time":"","type":"","says":""}`},
		{Problem{}, `{"type":"","title":"","status":0,"detail":""}`},
		{Problem{NAC: "L", NACBundle: "U"}, `{"type":"","title":"","status":0,"detail":"","nac":"L","nac_bundle_url":"U"}`},
		{PickupView{}, `{"label":"","mode":"","sender":"","recipient":"","key_name":"","commitment":"","deadline":"","state":"","need_password":false,"size":0,"csrf":""}`},
		{PickupView{Content: "c", Closed: "x", Hint: "h", MessageURL: "u"}, `{"label":"","mode":"","sender":"","recipient":"","key_name":"","commitment":"","content":"c","deadline":"","state":"","closed":"x","need_password":false,"hint":"h","size":0,"csrf":"","message_url":"u"}`},
		{PickupRequest{}, `{"csrf":""}`},
		{PickupRequest{Password: "p", VerifierKey: "v", PublicKey: []byte{1}, COD: "c", CODText: "t", Signature: []byte{2}},
			`{"csrf":"","password":"p","verifier_key":"v","public_key":"AQ==","cod":"c","cod_text":"t","signature":"Ag=="}`},
		{Enrolment{}, `{"address":"","key":"","new":false}`},
		{COD{}, `{"type":"","signer":"","text":""}`},
		{Decision{}, `{"label":"","state":"","recorded":null}`},
		{Publication{Request: "r", Key: []byte{1}}, `{"request":"r","key":"AQ=="}`},
		{Published{}, `{"label":"","ciphertext":"","key":null,"pub":"","bundle":"","logged":false}`},
		{Decision{Attestation: "a", MessageURL: "u"}, `{"label":"","state":"","recorded":null,"attestation":"a","message_url":"u"}`},
	} {
		b, err := json.Marshal(c.doc)
		if err != nil || string(b) != c.want {
			t.Errorf("%T:\n got %s %v\nwant %s", c.doc, b, err, c.want)
		}
	}
}

func TestProblem(t *testing.T) {
	p := &Problem{Type: ProblemPrefix + "size", Title: "Message too large", Status: 413, Detail: "send fewer files"}
	if p.Code() != "size" || p.Error() != "Message too large (413): send fewer files" {
		t.Fatalf("code %q, error %q", p.Code(), p.Error())
	}
	p.NAC = "01JDZ4Q8X3ABCDEFGHJKMNPQRS"
	if p.Error() != "Message too large (413): send fewer files; the refusal is recorded by NAC 01JDZ4Q8X3ABCDEFGHJKMNPQRS" {
		t.Fatalf("error %q", p.Error())
	}
}
