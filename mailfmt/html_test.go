package mailfmt

import (
	"html/template"
	"strings"
	"testing"
)

// docTemplate is the html/template that (*doc).html writes by hand: the oracle it must match
// byte for byte.
var docTemplate = template.Must(template.New("doc").Parse(`<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{{.Title}}</title></head>
<body style="font-family: sans-serif; max-width: 40em">
<h1 style="font-size: 1.3em">{{.Title}}</h1>
{{range .Blocks}}{{if .Link}}<p><a href="{{.Link}}">{{.Link}}</a></p>
{{else if .Code}}<pre>{{.Code}}</pre>
{{else if .Facts}}<table>
{{range .Facts}}<tr><th style="text-align: left; padding-right: 1em; vertical-align: top">{{.Key}}</th><td><code>{{.Value}}</code></td></tr>
{{end}}</table>
{{else}}<p>{{.Text}}</p>
{{end}}{{end}}</body></html>
`))

func templateHTML(t testing.TB, d *doc) string {
	t.Helper()
	var b strings.Builder
	if err := docTemplate.Execute(&b, d); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func sameHTML(t testing.TB, d *doc) {
	t.Helper()
	want := templateHTML(t, d)
	if got := string(d.html()); got != want {
		t.Fatalf("html differs from html/template's for %#v\n got %q\nwant %q", d, got, want)
	}
}

// nasty are values that html/template escapes, or that look as if it might.
var nasty = []string{
	"", " ", "plain words", `"double" 'single'`, "<script>alert(1)</script>", "a & b &amp; c", "1+1=2", "nul\x00byte",
	"\x00", "café “quoted” — ünïcødé 日本語 🙂", "\uFFFD", "\xff\xfe invalid \xc3", "\xe2\x80", "tab\tnew\nline\r\n",
	"&#34; &lt; already escaped", "`backtick` =equals=", "<!-- comment --> ]]>", "\u2028\u2029\u200b", "%41 %zz %",
}

// links are URLs with every character a URL attribute treats specially; all pass checkLink.
var links = []string{
	"https://mail.a.example/pickup/Zq3vT0kEn",
	"https://mail.a.example/p?a=1&b=2#frag",
	"https://mail.a.example/p?q='x'&r=\"y\"<z>",
	"http://mail.a.example/%41%4a%2F%e2%80%9c",
	"https://mail.a.example/a+b,c;d:e@f!g$h*i(j)k[l]m~n_o-p.q",
	"HTTPS://MAIL.A.EXAMPLE/UPPER",
	"https://mail.a.example:8443/p/%E2%80%9C?x=%25",
	"https://[2001:db8::1]/v6",
	"https://mail.a.example/{}|\\^`",
	"https://mail.a.example/#ZgotmplZ",
}

func TestDocHTMLMatchesTemplate(t *testing.T) {
	for _, link := range links {
		if err := checkLink(link); err != nil {
			t.Fatalf("test link %q: %v", link, err)
		}
	}
	// Links that checkLink refuses never reach html; that html still treats them as the
	// template does shows that it filters schemes as the template does.
	unchecked := []string{"javascript:alert(1)", "JavaScript:x", "data:text/html,<b>", "mailto:a@b.example?subject=a b",
		"//host/p", "/relative?a=<b>", "https://h.example/%zz%2/%", "https://h.example/?x=%%%", "rel/a:b", "ftp://x", " https://x", "https ://x", "\x00:x"}

	var docs []*doc
	for _, s := range nasty {
		docs = append(docs,
			&doc{Title: s},
			&doc{Title: "t", Blocks: []block{{Text: s}}},
			&doc{Title: "t", Blocks: []block{{Code: s}}},
			&doc{Title: "t", Blocks: []block{{Facts: []fact{{s, s}, {"Key", s}, {s, ""}}}}},
		)
	}
	for _, l := range append(links, unchecked...) {
		docs = append(docs, &doc{Title: "t", Blocks: []block{{Link: l}}})
	}
	docs = append(docs,
		&doc{}, // no title, no blocks
		&doc{Title: "empty facts", Blocks: []block{{Facts: nil}, {Facts: []fact{}}, {Text: "after"}}},
		&doc{Title: "precedence", Blocks: []block{
			{Text: "t", Facts: []fact{{"k", "v"}}, Code: "c", Link: links[1]},
			{Text: "t", Facts: []fact{{"k", "v"}}, Code: "c"},
			{Text: "t", Facts: []fact{{"k", "v"}}},
		}},
		&doc{Title: "Certified mail is waiting for you", Blocks: []block{
			{Text: "alice@a.example has sent you certified mail through mail.a.example."},
			{Facts: []fact{{"From", "alice@a.example"}, {"Label", "0JJ7AH4RW1PVB89WBWVHY7R4ZW"}}},
			{Text: "Pick it up here:"},
			{Link: links[0]},
			{Code: "certmail verify evidence.bundle --message message.eml"},
			{Text: "The sender's hint for the password: “<b>&amp;</b>”"},
		}},
	)
	for _, d := range docs {
		sameHTML(t, d)
	}
}

// FuzzDocHTML builds docs from fuzzed strings (fuzzDoc), and requires the hand-written html
// to equal html/template's.
func FuzzDocHTML(f *testing.F) {
	for i, s := range nasty {
		f.Add(s, s, s, s, s, links[i%len(links)], uint8(i))
	}
	for i, l := range links {
		f.Add("Title", "text", "Key", "value", "code", l, uint8(i*37))
		f.Add("Title", "text", "Key", "value", "code", strings.TrimPrefix(l, "https://mail.a.example/"), uint8(i*37))
	}
	f.Fuzz(func(t *testing.T, title, text, key, value, code, link string, shape uint8) {
		sameHTML(t, fuzzDoc(title, text, key, value, code, link, shape))
	})
}
