// Command spiffe-interop is the go-spiffe side of spiffe-sidecar's interop tests (test/interop/go-spiffe):
// go-spiffe v2 as a caller, as a callee and as a reference verifier, driven by the tests as a real process.
//
//	spiffe-interop client      an mTLS HTTP request to a SPIFFE server (spiffetls + tlsconfig.AuthorizeID)
//	spiffe-interop server      an mTLS HTTPS server that echoes the caller's SPIFFE ID (tlsconfig.MTLSServerConfig)
//	spiffe-interop verify-x509 x509svid.Verify (and x509svid.Parse) over a chain against bundles
//	spiffe-interop verify-jwt  jwtsvid.ParseAndValidate over a token against JWT bundles
//	spiffe-interop make-certs  edge-case X.509 certificates, good and bad, with a manifest
//
// Every command prints JSON on stdout: a result (the Go-side error included, as data, with exit status 0),
// or, for the server, one JSON line per event. Exit status 2 means the command line itself was wrong.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"

	"github.com/spiffe/go-spiffe/v2/bundle/jwtbundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

var commands = map[string]func(args []string) error{
	"client":      runClient,
	"server":      runServer,
	"verify-x509": runVerifyX509,
	"verify-jwt":  runVerifyJWT,
	"make-certs":  runMakeCerts,
}

func main() {
	if len(os.Args) < 2 || commands[os.Args[1]] == nil {
		names := make([]string, 0, len(commands))
		for name := range commands {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: spiffe-interop %s [flags]\n", strings.Join(names, "|"))
		os.Exit(2)
	}
	if err := commands[os.Args[1]](os.Args[2:]); err != nil {
		fmt.Fprintf(os.Stderr, "spiffe-interop %s: %v\n", os.Args[1], err)
		os.Exit(2)
	}
}

// stdout serializes JSON lines: the server writes from several goroutines.
var stdout = struct {
	sync.Mutex
	enc *json.Encoder
}{enc: json.NewEncoder(os.Stdout)}

func printJSON(v any) {
	stdout.Lock()
	defer stdout.Unlock()
	stdout.enc.SetEscapeHTML(false)
	if err := stdout.enc.Encode(v); err != nil {
		fmt.Fprintf(os.Stderr, "spiffe-interop: cannot write JSON: %v\n", err)
		os.Exit(1)
	}
}

// errorText is err's message, or "" for no error (omitted from the JSON).
func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// bundleFlags is a repeatable -bundle TD=FILE flag: one bundle file per trust domain.
type bundleFlags map[string]string

func (b bundleFlags) String() string { return fmt.Sprint(map[string]string(b)) }

func (b bundleFlags) Set(value string) error {
	td, file, ok := strings.Cut(value, "=")
	if !ok || td == "" || file == "" {
		return fmt.Errorf("want TD=FILE, got %q", value)
	}
	if _, dup := b[td]; dup {
		return fmt.Errorf("trust domain %q given twice", td)
	}
	b[td] = file
	return nil
}

// x509Bundles loads each PEM file as the X.509 bundle of its trust domain.
func (b bundleFlags) x509Bundles() (*x509bundle.Set, error) {
	set := x509bundle.NewSet()
	for name, file := range b {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, err
		}
		bundle, err := x509bundle.Load(td, file)
		if err != nil {
			return nil, err
		}
		set.Add(bundle)
	}
	return set, nil
}

// jwtBundles loads each JWKS file as the JWT bundle of its trust domain.
func (b bundleFlags) jwtBundles() (*jwtbundle.Set, error) {
	set := jwtbundle.NewSet()
	for name, file := range b {
		td, err := spiffeid.TrustDomainFromString(name)
		if err != nil {
			return nil, err
		}
		bundle, err := jwtbundle.Load(td, file)
		if err != nil {
			return nil, err
		}
		set.Add(bundle)
	}
	return set, nil
}

// listFlags is a repeatable string flag.
type listFlags []string

func (l *listFlags) String() string { return strings.Join(*l, ",") }

func (l *listFlags) Set(value string) error {
	*l = append(*l, value)
	return nil
}

// parseFlags parses a subcommand's flags and checks the required ones were given.
func parseFlags(fs *flag.FlagSet, args []string, required ...string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, name := range required {
		if !given[name] {
			return fmt.Errorf("-%s is required", name)
		}
	}
	return nil
}
