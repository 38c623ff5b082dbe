package mailfmt_test

import (
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"certmail/mailfmt"
)

func TestSafeFilename(t *testing.T) {
	long := strings.Repeat("é", 200) + ".pdf" // 404 bytes
	for in, want := range map[string]string{
		"report.pdf":                     "report.pdf",
		"../../etc/passwd":               "passwd",
		"..\\..\\Windows\\system.ini":    "system.ini",
		"C:\\Users\\bob\\Desktop\\a.txt": "a.txt",
		"/absolute/path/":                "path",
		"..":                             "attachment",
		"../..":                          "attachment",
		"/":                              "attachment",
		"":                               "attachment",
		".bashrc":                        "bashrc",
		"...hidden...":                   "hidden",
		"  spaced name  .txt  ":          "spaced name  .txt",
		"tab\there\nnewline\r.txt":       "tabherenewline.txt",
		"bell\x07\x00nul.txt":            "bellnul.txt",
		"invoice\u202efdp.exe":           "invoicefdp.exe", // right-to-left override dropped
		"zero\u200bwidth.doc":            "zerowidth.doc",
		"a<b>c:d\"e|f?g*h.txt":           "a_b_c_d_e_f_g_h.txt",
		"CON":                            "_CON",
		"nul.txt":                        "_nul.txt",
		"com1.tar.gz":                    "_com1.tar.gz",
		"LPT9":                           "_LPT9",
		"console.txt":                    "console.txt",
		"bad\xffutf8.txt":                "bad\ufffdutf8.txt",
		"non\u00a0breaking.txt":          "non breaking.txt",
		"日本語の書類.pdf":                     "日本語の書類.pdf",
		long:                             "", // checked below
	} {
		got := mailfmt.SafeFilename(in)
		if in == long {
			if len(got) > 255 || !strings.HasSuffix(got, ".pdf") || !utf8.ValidString(got) {
				t.Errorf("long name: %d bytes %q", len(got), got)
			}
			continue
		}
		if got != want {
			t.Errorf("SafeFilename(%q) = %q, want %q", in, got, want)
		}
	}
}

// checkSafe states what SafeFilename promises about any output.
func checkSafe(t *testing.T, in, got string) {
	t.Helper()
	switch {
	case got == "":
		t.Fatalf("SafeFilename(%q) is empty", in)
	case !utf8.ValidString(got):
		t.Fatalf("SafeFilename(%q) = %q is not UTF-8", in, got)
	case len(got) > 255:
		t.Fatalf("SafeFilename(%q) is %d bytes", in, len(got))
	case strings.ContainsAny(got, "/\\<>:\"|?*"):
		t.Fatalf("SafeFilename(%q) = %q has a path separator or reserved character", in, got)
	case got[0] == '.' || got[0] == ' ' || got[len(got)-1] == '.' || got[len(got)-1] == ' ':
		t.Fatalf("SafeFilename(%q) = %q starts or ends with a dot or space", in, got)
	case strings.ContainsFunc(got, func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }):
		t.Fatalf("SafeFilename(%q) = %q has a control or format character", in, got)
	}
	if again := mailfmt.SafeFilename(got); again != got {
		t.Fatalf("SafeFilename is not idempotent: %q -> %q -> %q", in, got, again)
	}
}

func FuzzSafeFilename(f *testing.F) {
	for _, s := range []string{"report.pdf", "../../etc/passwd", "C:\\x\\y.txt", "CON.txt", ".. ..", "a\u202eb",
		strings.Repeat("x", 300) + ".tar.gz", strings.Repeat("é", 130), "\xff\xfe", " . "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		checkSafe(t, in, mailfmt.SafeFilename(in))
	})
}
