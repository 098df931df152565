package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type clientResult struct {
	OK bool `json:"ok"`
	// PeerID is the server's SPIFFE ID as go-spiffe verified it.
	PeerID  string              `json:"peer_id,omitempty"`
	Status  int                 `json:"status,omitempty"`
	Headers map[string][]string `json:"headers,omitempty"`
	Body    string              `json:"body,omitempty"`
	// Error is the Go-side error: the dial, the handshake, the authorizer or the request.
	Error string `json:"error,omitempty"`
}

// runClient makes one HTTPS request over mTLS: our SVID from files, the server verified with go-spiffe
// against the bundles and authorized with tlsconfig.AuthorizeID (or AuthorizeMemberOf).
func runClient(args []string) error {
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	cert := fs.String("cert", "", "our X509-SVID: leaf then intermediates (PEM)")
	key := fs.String("key", "", "its private key (PEM)")
	bundles := bundleFlags{}
	fs.Var(bundles, "bundle", "TD=FILE: the X.509 bundle of a trust domain (PEM; repeatable)")
	serverID := fs.String("server-id", "", "the SPIFFE ID the server must have (tlsconfig.AuthorizeID)")
	serverTD := fs.String("server-trust-domain", "", "or: any server of this trust domain (tlsconfig.AuthorizeMemberOf)")
	target := fs.String("url", "", "the https:// URL to GET")
	method := fs.String("method", http.MethodGet, "the request method")
	var headers listFlags
	fs.Var(&headers, "header", "NAME: VALUE to send (repeatable)")
	timeout := fs.Duration("timeout", 15*time.Second, "for the whole exchange")
	if err := parseFlags(fs, args, "cert", "key", "bundle", "url"); err != nil {
		return err
	}

	var authorizer tlsconfig.Authorizer
	switch {
	case *serverID != "" && *serverTD == "":
		id, err := spiffeid.FromString(*serverID)
		if err != nil {
			return err
		}
		authorizer = tlsconfig.AuthorizeID(id)
	case *serverTD != "" && *serverID == "":
		td, err := spiffeid.TrustDomainFromString(*serverTD)
		if err != nil {
			return err
		}
		authorizer = tlsconfig.AuthorizeMemberOf(td)
	default:
		return fmt.Errorf("give one of -server-id and -server-trust-domain")
	}
	svid, err := x509svid.Load(*cert, *key)
	if err != nil {
		printJSON(clientResult{Error: err.Error()})
		return nil
	}
	set, err := bundles.x509Bundles()
	if err != nil {
		printJSON(clientResult{Error: err.Error()})
		return nil
	}

	var mu sync.Mutex
	var peer spiffeid.ID
	transport := &http.Transport{
		// Every connection is made by spiffetls: our SVID as the client certificate, the server's chain
		// verified by go-spiffe and its ID authorized before a byte of HTTP is written.
		DialTLSContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := spiffetls.DialWithMode(ctx, network, addr,
				spiffetls.MTLSClientWithRawConfig(authorizer, svid, set),
				spiffetls.WithDialer(&net.Dialer{Timeout: *timeout}))
			if err != nil {
				return nil, err
			}
			id, err := spiffetls.PeerIDFromConn(conn)
			if err != nil {
				_ = conn.Close()
				return nil, err
			}
			mu.Lock()
			peer = id
			mu.Unlock()
			return conn, nil
		},
		DisableKeepAlives: true,
	}
	httpClient := &http.Client{Transport: transport, Timeout: *timeout}
	req, err := http.NewRequest(*method, *target, nil)
	if err != nil {
		return err
	}
	for _, h := range headers {
		name, value, ok := strings.Cut(h, ":")
		if !ok {
			return fmt.Errorf("-header %q: want NAME: VALUE", h)
		}
		req.Header.Add(strings.TrimSpace(name), strings.TrimSpace(value))
	}
	res, err := httpClient.Do(req)
	if err != nil {
		printJSON(clientResult{Error: err.Error()})
		return nil
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	mu.Lock()
	defer mu.Unlock()
	printJSON(clientResult{
		OK:      err == nil,
		PeerID:  peer.String(),
		Status:  res.StatusCode,
		Headers: res.Header,
		Body:    string(body),
		Error:   errorText(err),
	})
	return nil
}
