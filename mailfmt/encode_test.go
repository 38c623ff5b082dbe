package mailfmt

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"mime"
	"strings"
	"testing"
	"time"

	"certmail/evidence"
)

// The tests here compare the encoders with their oracle in oracle_test.go byte for byte; the
// mails as a whole are pinned by TestGolden and TestComposedDigests.

func TestConstantFields(t *testing.T) {
	for got, want := range map[string]string{
		plainUTF8:  mime.FormatMediaType("text/plain", map[string]string{"charset": "utf-8"}),
		htmlUTF8:   mime.FormatMediaType("text/html", map[string]string{"charset": "utf-8"}),
		bundleType: mime.FormatMediaType("application/vnd.certmail.bundle", map[string]string{}),
	} {
		if got != want {
			t.Errorf("%q, mime.FormatMediaType writes %q", got, want)
		}
	}
	for _, name := range []string{"message.eml", "evidence.bundle", "cop.note", "cop-2.note", "cod-ip.note", "cmp2-nro.note",
		"aghp-receipt.note", "A_Z.09", "", "a b", "x=y", `say"hi"`, `back\slash`, "ü.txt", "a;b", "tab\t", "(x)"} {
		if got, want := attachment(name), mime.FormatMediaType("attachment", map[string]string{"filename": name}); got != want {
			t.Errorf("attachment(%q) = %q, mime.FormatMediaType writes %q", name, got, want)
		}
	}
}

func TestCRLFText(t *testing.T) {
	// Every string of a, CR and LF up to 7 long.
	var all func(prefix []byte, n int)
	all = func(prefix []byte, n int) {
		if got, want := crlfText(prefix), bytes.Equal(normalizeCRLF(prefix), prefix); got != want {
			t.Errorf("crlfText(%q) = %v, normalizeCRLF says %v", prefix, got, want)
		}
		if n == 0 {
			return
		}
		for _, c := range []byte("a\r\n") {
			all(append(prefix[:len(prefix):len(prefix)], c), n-1)
		}
	}
	all(nil, 7)
}

func TestBase64MatchesOld(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := range 400 {
		data := make([]byte, n)
		for i := range data {
			data[i] = byte(r.Uint32())
		}
		var b bytes.Buffer
		writeBase64(&b, data)
		if want := oldBase64Lines(data); !bytes.Equal(b.Bytes(), want) {
			t.Fatalf("%d bytes: got\n%s\nwant\n%s", n, b.Bytes(), want)
		}
	}
}

// subjects are header values that fold, encode or are refused.
var subjects = []string{
	"", " ", "Quarterly report", "Offerta n° 42 — caffè", "looks =?utf-8?q?encoded?= but is not", "a=?b", "under_score and ?question",
	strings.Repeat("Präambel zum Vertrag über die Lieferung ", 12), strings.Repeat("word ", 100), strings.Repeat("x", 1200),
	strings.Repeat("x", 900) + " y", strings.Repeat("x", 901), "Hello\r\nBcc: eve@e.example\r\n\r\nbody\x00\t€", "\xff\xfe invalid",
	"emoji 🙂🙂🙂 " + strings.Repeat("日本語", 30), strings.Repeat("é", 100), strings.Repeat("two  spaces ", 20), strings.Repeat("x", 69) + "  y", "  leading and trailing  ", "tab\there", "!*+-/=_?",
}

func TestHeaderEncodingMatchesOld(t *testing.T) {
	for _, s := range subjects {
		if got, want := encodeText(s), oldEncodeText(s); got != want {
			t.Errorf("encodeText(%q):\n got %q\nwant %q", s, got, want)
		}
		if got, want := qEncode(s), oldQEncode(s); got != want {
			t.Errorf("qEncode(%q):\n got %q\nwant %q", s, got, want)
		}
		for _, name := range []string{"Subject", "X-Certmail-Label", "Bad Name", ""} {
			var got, want bytes.Buffer
			gotErr, wantErr := writeField(&got, name, s), oldWriteField(&want, name, s)
			if !bytes.Equal(got.Bytes(), want.Bytes()) || fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Errorf("writeField(%q, %q):\n got %q, %v\nwant %q, %v", name, s, got.Bytes(), gotErr, want.Bytes(), wantErr)
			}
		}
	}
}

// fuzzDoc builds a doc of the blocks the fuzzed strings make, links only those that checkLink
// accepts (Notification checks its link), in an order and number that shape picks.
func fuzzDoc(title, text, key, value, code, link string, shape uint8) *doc {
	var bls []block
	for _, l := range []string{link, "https://mail.a.example/" + link, "http://h.example/p?" + link} {
		if checkLink(l) == nil {
			bls = append(bls, block{Link: l})
		}
	}
	if shape&1 != 0 && len(bls) > 0 {
		bls[0].Text, bls[0].Code = text, code // a link wins over anything else in a block
	}
	bls = append(bls,
		block{Text: text},
		block{Code: code},
		block{Facts: []fact{{key, value}, {value, key}}},
		block{Text: text, Code: code, Facts: []fact{{key, value}}},
		block{Text: text, Facts: []fact{{key, value}}},
		block{Text: value, Facts: []fact{}},
		block{Text: key, Facts: nil},
	)
	d := &doc{Title: title}
	for i := range bls {
		if shape>>(i%8)&1 != 0 || i >= 8 {
			d.Blocks = append(d.Blocks, bls[(i+int(shape))%len(bls)])
		}
	}
	return d
}

// composeBoth composes one mail of the shape that shape picks, with the encoders and with the
// oracle: a notification's alternative of text and HTML, the notes and bundle of a receipt, the
// message M (which can hold a boundary, or be refused).
func composeBoth(h Head, subject string, d *doc, data, m []byte, shape uint8) (got, want []byte, gotErr, wantErr error) {
	text := textPart(plainUTF8, d.text())
	oldTxt := oldTextPart("plain", oldText(d))
	body, oldBody := text, oldTxt
	if shape&0x10 != 0 {
		var b strings.Builder
		if err := docTemplate.Execute(&b, d); err != nil {
			panic(err)
		}
		body = &part{kind: "alternative", parts: []*part{text, textPart(htmlUTF8, d.html())}}
		oldBody = &oldPart{kind: "alternative", parts: []*oldPart{oldTxt, oldTextPart("html", b.String())}}
	}
	var files []*part
	var oldFiles []*oldPart
	if shape&0x20 != 0 {
		files = append(files, filePart(plainUTF8, "cop.note", data), filePart(bundleType, "evidence.bundle", m))
		oldFiles = append(oldFiles, oldFilePart("text/plain", "cop.note", data),
			oldFilePart("application/vnd.certmail.bundle", "evidence.bundle", m))
	}
	if shape&0x40 != 0 {
		mp, err := messagePart(m)
		oldMP, oldErr := oldMessagePart(m)
		if err != nil || oldErr != nil {
			return nil, nil, err, oldErr
		}
		files, oldFiles = append(files, mp), append(oldFiles, oldMP)
	}
	if len(files) > 0 {
		body = &part{kind: "mixed", parts: append([]*part{body}, files...)}
		oldBody = &oldPart{kind: "mixed", parts: append([]*oldPart{oldBody}, oldFiles...)}
	}
	var label evidence.Label
	if shape&0x80 != 0 {
		label[0] = shape
	}
	got, gotErr = compose(h, KindNotification, label, subject, body)
	want, wantErr = oldCompose(h, KindNotification, label, subject, oldBody)
	return got, want, gotErr, wantErr
}

func sameMail(t *testing.T, h Head, subject string, d *doc, data, m []byte, shape uint8) {
	t.Helper()
	got, want, gotErr, wantErr := composeBoth(h, subject, d, data, m, shape)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("shape %#x: error %v, the oracle's %v", shape, gotErr, wantErr)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("shape %#x: the mail differs from the oracle's:\n got %q\nwant %q", shape, got, want)
	}
}

func testHead() Head {
	return Head{From: "certmail@mail.a.example", To: "bob@b.example", Date: time.Date(2026, 11, 23, 18, 0, 0, 0, time.UTC),
		Domain: "mail.a.example", ID: "T3STID0000000001"}
}

func TestComposeMatchesOld(t *testing.T) {
	m := []byte("From: alice@a.example\r\nTo: bob@b.example\r\nSubject: caffè\r\n\r\nCiao Bob, ecco l’offerta.\r\n")
	badMs := [][]byte{nil, []byte("no line end"), []byte("lone\nLF\r\n"), []byte("NUL\x00\r\n"),
		[]byte(strings.Repeat("x", 999) + "\r\n"), []byte("holds the boundary\r\n--=_T3STID0000000001_1\r\n")}
	h := testHead()
	for i, s := range subjects {
		for _, v := range nasty {
			d := &doc{Title: s, Blocks: []block{{Text: v + " " + s}, {Facts: []fact{{"Key", v}, {v, s}}}, {Code: v}, {Link: links[i%len(links)]}}}
			hv := h
			hv.Name, hv.InReplyTo = v, "<c0ffee.1@a.example>"
			for _, shape := range []uint8{0, 0x10, 0x30, 0x70, 0xf0} {
				sameMail(t, hv, s, d, []byte(v+s), m, shape)
			}
		}
	}
	for _, bad := range badMs {
		sameMail(t, h, "s", &doc{Title: "t"}, nil, bad, 0x70)
	}
}

// FuzzCompose composes mails from fuzzed content with the encoders and with their oracle
// (oracle_test.go, html/template) and requires the same bytes, or the same error.
func FuzzCompose(f *testing.F) {
	h := testHead()
	for i, s := range subjects {
		v := nasty[i%len(nasty)]
		f.Add(s, v, "Key", v, "certmail verify evidence.bundle", links[i%len(links)], v, []byte(s), []byte("Subject: x\r\n\r\nM\r\n"), uint8(i*29))
	}
	f.Add("t", "text", "k", "v", "c", "l", "", []byte{}, []byte("x\r\n--=_T3STID0000000001_2\r\n"), uint8(0xff))
	f.Fuzz(func(t *testing.T, subject, text, key, value, code, link, name string, data, m []byte, shape uint8) {
		hf := h
		hf.Name = name
		if shape&2 != 0 {
			hf.InReplyTo = "<" + key + "@a.example>"
		}
		sameMail(t, hf, subject, fuzzDoc(subject, text, key, value, code, link, shape), data, m, shape)
	})
}
