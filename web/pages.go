package web

import (
	"bytes"
	"embed"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"time"

	"certmail/evidence"
)

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFS embed.FS

// pages are the page templates by name, each parsed with layout.html.
type pages map[string]*template.Template

var pageFuncs = template.FuncMap{
	"time": func(t time.Time) string { return evidence.FormatTime(t) },
	"size": humanSize,
}

// loadPages parses every page with the layout. The templates are embedded, so a failure is a
// bug in this package: it panics at New, in every test.
func loadPages() pages {
	p := pages{}
	for _, name := range []string{"notice", "pickup", "message"} {
		p[name] = template.Must(template.New(name).Funcs(pageFuncs).ParseFS(templateFiles,
			"templates/layout.html", "templates/"+name+".html"))
	}
	return p
}

func staticFiles() http.Handler {
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		files.ServeHTTP(w, r)
	})
}

// render writes a page. It renders into a buffer first, so a template failure is a clean 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, page string, data any) {
	var b bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&b, "layout", data); err != nil {
		s.log.Error("web: render page", "page", page, "err", err)
		http.Error(w, "the page cannot be shown", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

type noticeData struct {
	Title, Message string
	Link, LinkText string
}

// notice renders a page that says one thing: an error, or that nothing more can be done.
func (s *Server) notice(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	s.noticeLink(w, r, status, noticeData{Title: title, Message: message})
}

func (s *Server) noticeLink(w http.ResponseWriter, r *http.Request, status int, d noticeData) {
	if status >= 400 {
		note(w, http.StatusText(status))
	}
	s.render(w, r, status, "notice", d)
}

func (s *Server) pageNotFound(w http.ResponseWriter, r *http.Request) {
	s.notice(w, r, http.StatusNotFound, "Page not found", "There is nothing at this address. If you followed a link from an e-mail, check that it was not cut short.")
}

// humanSize writes a size for people, with the exact count of bytes for small ones.
func humanSize(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n == 1:
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}
