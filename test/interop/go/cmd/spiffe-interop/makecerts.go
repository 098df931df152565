package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// The manifest make-certs writes beside the certificates; paths are relative to its directory.
type manifest struct {
	// Bundles: trust domain → PEM file of its root. A verifier is given all of them.
	Bundles map[string]string `json:"bundles"`
	// Server: a valid SVID of example.org, for a sidecar that verifies the cases as its callers.
	Server manifestSVID   `json:"server"`
	Cases  []manifestCase `json:"cases"`
}

type manifestSVID struct {
	ID   string `json:"id"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

type manifestCase struct {
	Name string `json:"name"`
	// URIs: the leaf's URI SANs exactly as written in the certificate.
	URIs []string `json:"uris"`
	// Expect: what a validator must do per the specs: "accept", "reject", or "either" where the specs
	// bind only the issuer (or leave it open) and a validator may do both.
	Expect string `json:"expect"`
	// Spec: the section that decides; Why: what is wrong (or right) with the certificate.
	Spec  string `json:"spec"`
	Why   string `json:"why"`
	Chain string `json:"chain"`
	Key   string `json:"key"`
}

// authority is a CA that signs: its certificate, key, and the DER of the chain a leaf under it carries
// (this CA and the intermediates above it; empty for a root, which the bundle holds).
type authority struct {
	cert  *x509.Certificate
	key   *ecdsa.PrivateKey
	chain [][]byte
}

type generator struct {
	out  string
	now  time.Time
	man  manifest
	seen map[string]bool
}

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidKeyUsage       = asn1.ObjectIdentifier{2, 5, 29, 15}
	// An extension no verifier knows (a private-enterprise arc reserved for examples, RFC 5612).
	oidUnknown = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 32473, 1}
)

// sanExtension encodes URI (and DNS) SANs byte for byte as given: crypto/x509 would re-serialise a
// url.URL, and some cases need exactly the bytes no URL library would write.
func sanExtension(uris, dnsNames []string) pkix.Extension {
	var names []asn1.RawValue
	for _, dns := range dnsNames {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 2, Bytes: []byte(dns)})
	}
	for _, uri := range uris {
		names = append(names, asn1.RawValue{Class: asn1.ClassContextSpecific, Tag: 6, Bytes: []byte(uri)})
	}
	value, err := asn1.Marshal(names)
	if err != nil {
		panic(err)
	}
	return pkix.Extension{Id: oidSubjectAltName, Value: value}
}

func (g *generator) serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}

func newKey() *ecdsa.PrivateKey {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return key
}

// sign issues template for key under parent (self-signed when parent is nil) and returns the DER.
func sign(template *x509.Certificate, key *ecdsa.PrivateKey, parent *authority) []byte {
	parentCert, signer := template, key
	if parent != nil {
		parentCert, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, template, parentCert, &key.PublicKey, signer)
	if err != nil {
		panic(fmt.Sprintf("%s: %v", template.Subject.CommonName, err))
	}
	return der
}

func parse(der []byte) *x509.Certificate {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		panic(err)
	}
	return cert
}

// caTemplate: CA:TRUE, keyCertSign and cRLSign (critical), valid from an hour ago for a day.
func (g *generator) caTemplate(cn string, uris ...string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          g.serial(),
		Subject:               pkix.Name{Organization: []string{"spiffe-interop"}, CommonName: cn},
		NotBefore:             g.now.Add(-time.Hour),
		NotAfter:              g.now.Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		ExtraExtensions:       []pkix.Extension{sanExtension(uris, nil)},
	}
}

// root makes a self-signed root of a trust domain (URI SAN spiffe://TD, X509-SVID §3.1).
func (g *generator) root(td, cn string) *authority {
	key := newKey()
	template := g.caTemplate(cn, "spiffe://"+td)
	return &authority{cert: parse(sign(template, key, nil)), key: key}
}

// intermediate makes a CA under parent; tweak may change the template (nil: a well-formed one).
func (g *generator) intermediate(parent *authority, cn string, tweak func(*x509.Certificate)) *authority {
	key := newKey()
	template := g.caTemplate(cn)
	template.ExtraExtensions = nil
	if tweak != nil {
		tweak(template)
	}
	der := sign(template, key, parent)
	return &authority{cert: parse(der), key: key, chain: append([][]byte{der}, parent.chain...)}
}

// leafTemplate is a well-formed X509-SVID: not a CA, digitalSignature (critical), serverAuth and
// clientAuth, valid from a minute ago for an hour, with these URI SANs.
func (g *generator) leafTemplate(uris ...string) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber:          g.serial(),
		Subject:               pkix.Name{Organization: []string{"spiffe-interop"}},
		NotBefore:             g.now.Add(-time.Minute),
		NotAfter:              g.now.Add(time.Hour),
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		ExtraExtensions:       []pkix.Extension{sanExtension(uris, nil)},
	}
}

func pemOf(kind string, ders ...[]byte) []byte {
	var out []byte
	for _, der := range ders {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})...)
	}
	return out
}

func keyPEM(key *ecdsa.PrivateKey) []byte {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		panic(err)
	}
	return pemOf("PRIVATE KEY", der)
}

func (g *generator) write(rel string, data []byte, mode os.FileMode) string {
	path := filepath.Join(g.out, rel)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		panic(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		panic(err)
	}
	return rel
}

// issue signs a leaf template under parent and returns its chain (leaf first, then parent's chain).
func issue(template *x509.Certificate, key *ecdsa.PrivateKey, parent *authority) [][]byte {
	return append([][]byte{sign(template, key, parent)}, parent.chain...)
}

// add writes one case: its chain, its key, and its manifest entry.
func (g *generator) add(name, expect, spec, why string, uris []string, chain [][]byte, key *ecdsa.PrivateKey) {
	if g.seen[name] {
		panic("duplicate case " + name)
	}
	g.seen[name] = true
	g.man.Cases = append(g.man.Cases, manifestCase{
		Name:   name,
		URIs:   uris,
		Expect: expect,
		Spec:   spec,
		Why:    why,
		Chain:  g.write(filepath.Join("cases", name, "chain.pem"), pemOf("CERTIFICATE", chain...), 0o644),
		Key:    g.write(filepath.Join("cases", name, "key.pem"), keyPEM(key), 0o600),
	})
}

// leafCase adds a leaf under parent with these URI SANs, its template changed by tweak.
func (g *generator) leafCase(name, expect, spec, why string, parent *authority, uris []string, tweak func(*x509.Certificate)) {
	template := g.leafTemplate(uris...)
	if tweak != nil {
		tweak(template)
	}
	key := newKey()
	g.add(name, expect, spec, why, uris, issue(template, key, parent), key)
}

const workload = "spiffe://example.org/workload"

// runMakeCerts writes the edge cases and manifest.json into -out.
func runMakeCerts(args []string) error {
	fs := flag.NewFlagSet("make-certs", flag.ContinueOnError)
	out := fs.String("out", "", "the directory to write into (made if missing)")
	if err := parseFlags(fs, args, "out"); err != nil {
		return err
	}
	g := &generator{out: *out, now: time.Now(), seen: map[string]bool{}}

	example := g.root("example.org", "example.org root")
	other := g.root("other.org", "other.org root")
	// A CA that is in no bundle, and one that copies the example.org root's name with another key.
	unrelated := g.root("example.org", "unrelated root")
	forged := g.root("example.org", "example.org root")
	g.man.Bundles = map[string]string{
		"example.org": g.write("roots/example.org.pem", pemOf("CERTIFICATE", example.cert.Raw), 0o644),
		"other.org":   g.write("roots/other.org.pem", pemOf("CERTIFICATE", other.cert.Raw), 0o644),
	}
	serverKey := newKey()
	serverID := "spiffe://example.org/sidecar"
	g.man.Server = manifestSVID{
		ID:   serverID,
		Cert: g.write("server/tls.crt", pemOf("CERTIFICATE", issue(g.leafTemplate(serverID), serverKey, example)...), 0o644),
		Key:  g.write("server/tls.key", keyPEM(serverKey), 0o600),
	}
	intermediate := g.intermediate(example, "example.org intermediate", nil)
	one := []string{workload}

	// Good: every validator must accept these.
	g.leafCase("good-leaf-under-root", "accept", "X509-SVID §5", "a well-formed SVID signed by the root", example, one, nil)
	g.leafCase("good-leaf-under-intermediate", "accept", "X509-SVID §3.2, §5.1",
		"a well-formed SVID signed by an intermediate it carries in its chain", intermediate, one, nil)
	second := g.intermediate(intermediate, "example.org second intermediate", nil)
	g.leafCase("good-leaf-under-two-intermediates", "accept", "X509-SVID §5.1", "two intermediates in the chain", second, one, nil)
	constrained := g.intermediate(example, "example.org constrained intermediate", func(c *x509.Certificate) {
		c.PermittedURIDomains = []string{"example.org"}
		c.PermittedDNSDomainsCritical = true
	})
	g.leafCase("good-name-constraints-permit-the-trust-domain", "accept", "X509-SVID §4.2; RFC 5280 §4.2.1.10",
		"an intermediate whose URI name constraint permits example.org", constrained, one, nil)
	dotted := []string{"spiffe://example.org/..a/.b./..."}
	g.leafCase("good-segments-that-merely-contain-dots", "accept", "SPIFFE-ID §2.2",
		"segments such as ..a are not relative path modifiers", example, dotted, nil)
	mixed := []string{"spiffe://example.org/Ns/Prod_1/sa-X.y"}
	g.leafCase("good-path-is-case-sensitive", "accept", "SPIFFE-ID §2.2, §2.4", "upper case is valid in the path", example, mixed, nil)
	long := []string{"spiffe://example.org/" + strings.Repeat("a", 2048-len("spiffe://example.org/"))}
	g.leafCase("good-id-of-2048-bytes", "accept", "SPIFFE-ID §2.3", "implementations MUST support 2048-byte IDs", example, long, nil)
	g.leafCase("good-with-a-dns-san-too", "accept", "X509-SVID §2", "exactly one URI SAN; other SAN types are allowed", example, one,
		func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{sanExtension(one, []string{"workload.example.org"})}
		})
	{
		template, key := g.leafTemplate(one...), newKey()
		chain := append(issue(template, key, intermediate), example.cert.Raw)
		g.add("good-chain-includes-the-root", "accept", "RFC 5280 §6.1; RFC 8446 §4.4.2",
			"the peer sends the root too: it is only an untrusted extra certificate", one, chain, key)
	}
	{
		template, key := g.leafTemplate(one...), newKey()
		chain := append(issue(template, key, intermediate), unrelated.cert.Raw)
		g.add("good-chain-with-an-unrelated-extra-certificate", "accept", "RFC 5280 §6.1",
			"an extra certificate that is on no path is ignored", one, chain, key)
	}

	// The leaf is not a leaf.
	g.leafCase("bad-leaf-is-a-ca", "reject", "X509-SVID §4.1, §5.2", "the leaf has CA:TRUE", example, one,
		func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage |= x509.KeyUsageCertSign })
	g.leafCase("bad-leaf-has-keycertsign", "reject", "X509-SVID §4.3, §5.2", "the leaf's key usage has keyCertSign", example, one,
		func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCertSign })
	g.leafCase("bad-leaf-has-crlsign", "reject", "X509-SVID §4.3, §5.2", "the leaf's key usage has cRLSign", example, one,
		func(c *x509.Certificate) { c.KeyUsage |= x509.KeyUsageCRLSign })
	g.leafCase("bad-leaf-without-digitalsignature", "reject", "X509-SVID §4.3; RFC 8446 §4.4.2.2",
		"key usage present without digitalSignature: the key may not sign the handshake", example, one,
		func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageKeyEncipherment })
	g.leafCase("bad-leaf-eku-server-auth-only", "reject", "X509-SVID §4.4; RFC 5280 §4.2.1.12",
		"extended key usage serverAuth only: not usable as a client certificate", example, one,
		func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth} })
	g.leafCase("bad-leaf-unknown-critical-extension", "reject", "RFC 5280 §4.2",
		"a critical extension no verifier knows", example, one,
		func(c *x509.Certificate) {
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: oidUnknown, Critical: true, Value: []byte{5, 0}})
		})
	{
		template, key := g.leafTemplate(one...), newKey()
		template.Subject = pkix.Name{CommonName: "self-signed leaf"}
		der := sign(template, key, nil)
		g.add("bad-leaf-self-signed", "reject", "X509-SVID §5.1", "a leaf that signed itself", one, [][]byte{der}, key)
	}

	// The URI SAN is not one SPIFFE ID with a path.
	g.leafCase("bad-no-uri-san", "reject", "X509-SVID §2", "a DNS SAN and no URI SAN", example, nil,
		func(c *x509.Certificate) {
			c.ExtraExtensions = []pkix.Extension{sanExtension(nil, []string{"workload.example.org"})}
		})
	g.leafCase("bad-two-uri-sans", "reject", "X509-SVID §2, §5.2", "two SPIFFE IDs", example,
		[]string{workload, "spiffe://example.org/admin"}, nil)
	g.leafCase("bad-two-uri-sans-one-not-spiffe", "reject", "X509-SVID §2, §5.2", "a SPIFFE ID and an https URI", example,
		[]string{workload, "https://example.org/workload"}, nil)
	badIDs := []struct{ name, expect, spec, why, uri string }{
		{"bad-id-without-path", "reject", "X509-SVID §2, §5.2", "a leaf's SPIFFE ID must have a non-root path", "spiffe://example.org"},
		{"bad-id-other-scheme", "reject", "X509-SVID §5.2", "the scheme is not spiffe", "https://example.org/workload"},
		{"bad-id-uppercase-trust-domain", "reject", "SPIFFE-ID §2.1", "the trust domain must be lower case", "spiffe://Example.org/workload"},
		{"bad-id-port", "reject", "SPIFFE-ID §2.1", "a port in the authority", "spiffe://example.org:8443/workload"},
		{"bad-id-userinfo", "reject", "SPIFFE-ID §2.1", "userinfo in the authority", "spiffe://admin@example.org/workload"},
		{"bad-id-query", "reject", "SPIFFE-ID §2", "a query component", "spiffe://example.org/workload?x=1"},
		{"bad-id-fragment", "reject", "SPIFFE-ID §2", "a fragment component", "spiffe://example.org/workload#f"},
		{"bad-id-percent-encoded-path", "reject", "SPIFFE-ID §2.2", "a percent-encoded character", "spiffe://example.org/%77orkload"},
		{"bad-id-percent-encoded-trust-domain", "reject", "SPIFFE-ID §2.1", "a percent-encoded trust domain", "spiffe://%65xample.org/workload"},
		{"bad-id-dot-segment", "reject", "SPIFFE-ID §2.2", "a . segment", "spiffe://example.org/a/./workload"},
		{"bad-id-dot-dot-segment", "reject", "SPIFFE-ID §2.2", "a .. segment", "spiffe://example.org/a/../workload"},
		{"bad-id-empty-segment", "reject", "SPIFFE-ID §2.2", "an empty segment", "spiffe://example.org/a//workload"},
		{"bad-id-trailing-slash", "reject", "SPIFFE-ID §2.2", "a trailing slash", "spiffe://example.org/workload/"},
		{"bad-id-path-character", "reject", "SPIFFE-ID §2.2", "a $ in a segment", "spiffe://example.org/work$load"},
		{"bad-id-ipv6-trust-domain", "reject", "SPIFFE-ID §2.1", "an IPv6 literal is not a trust domain", "spiffe://[::1]/workload"},
		// The spec is split on these two: §2 says the scheme MUST be spiffe and §2.4 that it is
		// case-insensitive; §2.3 asks implementations to support 2048 bytes but sets no upper bound.
		{"either-id-uppercase-scheme", "either", "SPIFFE-ID §2 vs §2.4; X509-SVID §5.2",
			"the scheme written SPIFFE: §2.4 calls the scheme case-insensitive, §2 and X509-SVID §5.2 want it set to spiffe",
			"SPIFFE://example.org/workload"},
		{"either-id-longer-than-2048-bytes", "either", "SPIFFE-ID §2.3",
			"2049 bytes: implementations MUST support 2048 and SHOULD NOT generate more; longer may be refused",
			"spiffe://example.org/" + strings.Repeat("a", 2049-len("spiffe://example.org/"))},
	}
	for _, c := range badIDs {
		g.leafCase(c.name, c.expect, c.spec, c.why, example, []string{c.uri}, nil)
	}

	// Issuer-side rules (X509-SVID §4.3, §4.4) that §5 does not ask a validator to enforce.
	g.leafCase("either-leaf-without-key-usage", "either", "X509-SVID §4.3 (issuer) vs §5.2",
		"no key usage extension: issuers MUST set it, validators are not told to check it (RFC 5280: no restriction)",
		example, one, func(c *x509.Certificate) { c.KeyUsage = 0 })
	g.leafCase("either-leaf-key-usage-not-critical", "either", "X509-SVID §4.3 (issuer) vs §5.2",
		"key usage digitalSignature, not marked critical", example, one, func(c *x509.Certificate) {
			value, err := asn1.Marshal(asn1.BitString{Bytes: []byte{0x80}, BitLength: 1})
			if err != nil {
				panic(err)
			}
			c.KeyUsage = 0
			c.ExtraExtensions = append(c.ExtraExtensions, pkix.Extension{Id: oidKeyUsage, Value: value})
		})
	g.leafCase("either-leaf-eku-client-auth-only", "either", "X509-SVID §4.4 (issuer) vs §5.2",
		"extended key usage clientAuth only: issuers MUST set both, yet it is a usable client certificate", example, one,
		func(c *x509.Certificate) { c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth} })

	// Trust: the chain does not lead to an authority of the leaf's own trust domain.
	g.leafCase("bad-wrong-trust-domain", "reject", "SPIFFE-ID §3; X509-SVID §5.1",
		"spiffe://other.org/workload signed by the example.org root", example, []string{"spiffe://other.org/workload"}, nil)
	g.leafCase("bad-trust-domain-without-bundle", "reject", "SPIFFE Trust Domain and Bundle §4; X509-SVID §5.1",
		"spiffe://unknown.org/workload: no bundle for its trust domain", example, []string{"spiffe://unknown.org/workload"}, nil)
	g.leafCase("bad-cross-trust-domain-forgery", "reject", "SPIFFE-ID §3; Federation §4.2",
		"spiffe://example.org/workload signed by the other.org root, which the verifier also trusts", other, one, nil)
	foreign := g.intermediate(other, "other.org intermediate", nil)
	g.leafCase("bad-intermediate-of-another-trust-domain", "reject", "SPIFFE-ID §3",
		"spiffe://example.org/workload under an intermediate of other.org", foreign, one, nil)
	g.leafCase("bad-signed-by-an-unrelated-ca", "reject", "X509-SVID §5.1", "the issuing root is in no bundle", unrelated, one, nil)
	g.leafCase("bad-forged-issuer-name", "reject", "X509-SVID §5.1; RFC 5280 §6.1.3",
		"signed by another key under the example.org root's exact name", forged, one, nil)
	{
		template, key := g.leafTemplate(one...), newKey()
		chain := issue(template, key, intermediate)[:1]
		g.add("bad-missing-intermediate", "reject", "X509-SVID §5.1",
			"a leaf of the intermediate, sent without it", one, chain, key)
	}

	// Validity and the signing certificates (RFC 5280 §6.1.3, §6.1.4; X509-SVID §4.1, §4.3).
	g.leafCase("bad-expired", "reject", "RFC 5280 §6.1.3", "the leaf expired a minute ago", example, one,
		func(c *x509.Certificate) {
			c.NotBefore = g.now.Add(-2 * time.Hour)
			c.NotAfter = g.now.Add(-time.Minute)
		})
	g.leafCase("bad-not-yet-valid", "reject", "RFC 5280 §6.1.3", "the leaf is valid from an hour from now", example, one,
		func(c *x509.Certificate) { c.NotBefore = g.now.Add(time.Hour); c.NotAfter = g.now.Add(2 * time.Hour) })
	expiredCA := g.intermediate(example, "expired intermediate", func(c *x509.Certificate) {
		c.NotBefore = g.now.Add(-2 * time.Hour)
		c.NotAfter = g.now.Add(-time.Minute)
	})
	g.leafCase("bad-expired-intermediate", "reject", "RFC 5280 §6.1.3", "the intermediate expired a minute ago", expiredCA, one, nil)
	notCA := g.intermediate(example, "intermediate without CA", func(c *x509.Certificate) {
		c.IsCA = false
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	})
	g.leafCase("bad-intermediate-not-a-ca", "reject", "X509-SVID §4.1; RFC 5280 §6.1.4(k)",
		"the signing certificate has CA:FALSE", notCA, one, nil)
	noCertSign := g.intermediate(example, "intermediate without keyCertSign", func(c *x509.Certificate) {
		c.KeyUsage = x509.KeyUsageCRLSign
	})
	g.leafCase("bad-intermediate-without-keycertsign", "reject", "X509-SVID §4.3, §5.1; RFC 5280 §6.1.4(n)",
		"the signing certificate's key usage lacks keyCertSign", noCertSign, one, nil)
	pathLenZero := g.intermediate(example, "intermediate with pathLen 0", func(c *x509.Certificate) {
		c.MaxPathLen = 0
		c.MaxPathLenZero = true
	})
	below := g.intermediate(pathLenZero, "intermediate below pathLen 0", nil)
	g.leafCase("bad-path-length-exceeded", "reject", "X509-SVID §4.1; RFC 5280 §6.1.4(l)",
		"a CA under an intermediate whose pathLenConstraint is 0", below, one, nil)
	elsewhere := g.intermediate(example, "intermediate constrained to other.org", func(c *x509.Certificate) {
		c.PermittedURIDomains = []string{"other.org"}
		c.PermittedDNSDomainsCritical = true
	})
	g.leafCase("bad-name-constraints-exclude-the-leaf", "reject", "X509-SVID §4.2; RFC 5280 §4.2.1.10",
		"spiffe://example.org/workload under an intermediate that permits only other.org URIs", elsewhere, one, nil)

	data, err := json.MarshalIndent(g.man, "", "  ")
	if err != nil {
		return err
	}
	g.write("manifest.json", append(data, '\n'), 0o644)
	printJSON(map[string]any{"manifest": filepath.Join(*out, "manifest.json"), "cases": len(g.man.Cases)})
	return nil
}
