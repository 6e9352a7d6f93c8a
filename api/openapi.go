package api

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"sort"

	"github.com/labstack/echo/v4"
)

// The OpenAPI document is kept as one fragment per domain (00-base.json holds
// info, security and shared components) so each domain documents its routes
// beside the others without editing one huge file; a test keeps the merged
// document in step with the routes Echo registers.
//
//go:embed openapi/*.json
var openAPIFragments embed.FS

var openAPI = mustMergeOpenAPI(openAPIFragments)

// mustMergeOpenAPI merges the fragments in name order: top-level keys from the
// first that sets them; paths and every components section key by key. A key
// defined twice is a bug caught at start-up (and by every test).
func mustMergeOpenAPI(fsys fs.FS) []byte {
	names, err := fs.Glob(fsys, "openapi/*.json")
	if err != nil {
		panic(err)
	}
	sort.Strings(names)
	doc := map[string]any{}
	for _, name := range names {
		raw, err := fs.ReadFile(fsys, name)
		if err != nil {
			panic(err)
		}
		var frag map[string]any
		if err := json.Unmarshal(raw, &frag); err != nil {
			panic(fmt.Sprintf("openapi fragment %s: %v", name, err))
		}
		for key, value := range frag {
			switch key {
			case "paths":
				mergeKeys(doc, key, value, name)
			case "components":
				sections, _ := value.(map[string]any)
				components, _ := doc["components"].(map[string]any)
				if components == nil {
					components = map[string]any{}
					doc["components"] = components
				}
				for section, entries := range sections {
					mergeKeys(components, section, entries, name+" components")
				}
			default:
				if _, ok := doc[key]; !ok {
					doc[key] = value
				}
			}
		}
	}
	out, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return out
}

func mergeKeys(into map[string]any, key string, value any, where string) {
	dst, _ := into[key].(map[string]any)
	if dst == nil {
		dst = map[string]any{}
		into[key] = dst
	}
	src, _ := value.(map[string]any)
	for k, v := range src {
		if _, dup := dst[k]; dup {
			panic(fmt.Sprintf("openapi fragment %s: %s %q defined twice", where, key, k))
		}
		dst[k] = v
	}
}

func serveOpenAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPI)
}
