package mailfmt

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// maxFilename is the longest name SafeFilename returns, in bytes: what common file systems hold.
const maxFilename = 255

// SafeFilename makes a file name from a message safe to show and to save: valid UTF-8 (bad
// bytes become U+FFFD); only the last element of a path ("../../x" and "C:\x" give "x"); no
// control or invisible formatting characters (so no right-to-left override turning "exe.pdf"
// around); none of the characters Windows forbids (<>:"|?*), which become '_'; no leading dots
// or spaces (no hidden files, no "..") and no trailing dots or spaces; not a Windows device
// name (CON, NUL, COM1… get a leading '_'); at most 255 bytes, keeping a short extension. It
// never returns "": a name with nothing left is "attachment". It is idempotent.
func SafeFilename(name string) string {
	name = strings.ToValidUTF8(name, "\ufffd")
	name = strings.TrimRight(name, `/\ `)
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		switch {
		case r == '/' || r == '\\' || strings.ContainsRune(`<>:"|?*`, r):
			return '_'
		case unicode.IsControl(r), unicode.Is(unicode.Cf, r), r == '\u2028', r == '\u2029':
			return -1
		case unicode.IsSpace(r):
			return ' '
		}
		return r
	}, name)
	name = trimName(name)
	if len(name) > maxFilename {
		name = trimName(truncateName(name, maxFilename))
	}
	if name == "" {
		return "attachment"
	}
	if reservedName(name) {
		name = "_" + truncateName(name, maxFilename-1)
	}
	return name
}

func trimName(s string) string {
	s = strings.TrimLeft(s, ". ")
	return strings.TrimRight(s, ". ")
}

// truncateName cuts s to at most n bytes on a rune boundary, keeping an extension of up to 16
// bytes when there is one.
func truncateName(s string, n int) string {
	if len(s) <= n {
		return s
	}
	ext := ""
	if i := strings.LastIndexByte(s, '.'); i > 0 && len(s)-i <= 16 {
		s, ext = s[:i], s[i:]
	}
	cut := n - len(ext)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ext
}

// reservedName reports whether s is a Windows device name, with or without an extension.
func reservedName(s string) bool {
	base, _, _ := strings.Cut(s, ".")
	base = strings.ToUpper(strings.TrimRight(base, " "))
	switch base {
	case "CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$":
		return true
	}
	if strings.HasPrefix(base, "COM") || strings.HasPrefix(base, "LPT") {
		d := base[3:]
		return len(d) == 1 && d[0] >= '0' && d[0] <= '9' || d == "¹" || d == "²" || d == "³"
	}
	return false
}
