package main

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// serverEvent is one JSON line of the server: "ready" (with the port), "request" (who called what), or
// "tls_error" (a handshake go-spiffe refused, with its reason).
type serverEvent struct {
	Event  string `json:"event"`
	Port   int    `json:"port,omitempty"`
	ID     string `json:"id,omitempty"`
	PeerID string `json:"peer_id,omitempty"`
	Method string `json:"method,omitempty"`
	Path   string `json:"path,omitempty"`
	Error  string `json:"error,omitempty"`
}

// echoed is the response body: the caller's SPIFFE ID as go-spiffe verified it, and the request.
type echoed struct {
	PeerID  string              `json:"peer_id"`
	Method  string              `json:"method"`
	Path    string              `json:"path"`
	Headers map[string][]string `json:"headers"`
}

// tlsErrorLog turns net/http's "http: TLS handshake error from ADDR: REASON" lines into tls_error events;
// anything else it logs is passed on as an "http_log" event.
type tlsErrorLog struct{}

func (tlsErrorLog) Write(line []byte) (int, error) {
	text := strings.TrimSpace(string(line))
	if _, reason, ok := strings.Cut(text, "TLS handshake error from "); ok {
		if _, after, ok := strings.Cut(reason, ": "); ok {
			reason = after
		}
		printJSON(serverEvent{Event: "tls_error", Error: reason})
	} else {
		printJSON(serverEvent{Event: "http_log", Error: text})
	}
	return len(line), nil
}

// runServer serves HTTPS with go-spiffe's mTLS server configuration until SIGTERM or SIGINT.
func runServer(args []string) error {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	cert := fs.String("cert", "", "our X509-SVID: leaf then intermediates (PEM)")
	key := fs.String("key", "", "its private key (PEM)")
	bundles := bundleFlags{}
	fs.Var(bundles, "bundle", "TD=FILE: the X.509 bundle of a trust domain (PEM; repeatable)")
	clientID := fs.String("authorize-id", "", "admit only this SPIFFE ID (tlsconfig.AuthorizeID)")
	clientTD := fs.String("authorize-member-of", "", "or: any caller of this trust domain (tlsconfig.AuthorizeMemberOf)")
	listen := fs.String("listen", "127.0.0.1:0", "the address to listen on")
	if err := parseFlags(fs, args, "cert", "key", "bundle"); err != nil {
		return err
	}

	var authorizer tlsconfig.Authorizer
	switch {
	case *clientID != "" && *clientTD == "":
		id, err := spiffeid.FromString(*clientID)
		if err != nil {
			return err
		}
		authorizer = tlsconfig.AuthorizeID(id)
	case *clientTD != "" && *clientID == "":
		td, err := spiffeid.TrustDomainFromString(*clientTD)
		if err != nil {
			return err
		}
		authorizer = tlsconfig.AuthorizeMemberOf(td)
	default:
		return fmt.Errorf("give one of -authorize-id and -authorize-member-of")
	}
	svid, err := x509svid.Load(*cert, *key)
	if err != nil {
		return err
	}
	set, err := bundles.x509Bundles()
	if err != nil {
		return err
	}

	inner, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	config := tlsconfig.MTLSServerConfig(svid, set, authorizer)
	config.NextProtos = []string{"http/1.1"}
	server := &http.Server{
		Handler:  http.HandlerFunc(echo),
		ErrorLog: log.New(tlsErrorLog{}, "", 0),
	}
	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-stop
		_ = server.Close()
	}()
	printJSON(serverEvent{Event: "ready", Port: inner.Addr().(*net.TCPAddr).Port, ID: svid.ID.String()})
	if err := server.Serve(tls.NewListener(inner, config)); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func echo(w http.ResponseWriter, r *http.Request) {
	body := echoed{Method: r.Method, Path: r.URL.RequestURI(), Headers: r.Header}
	if r.TLS != nil {
		if id, err := spiffetls.PeerIDFromConnectionState(*r.TLS); err == nil {
			body.PeerID = id.String()
		}
	}
	printJSON(serverEvent{Event: "request", PeerID: body.PeerID, Method: r.Method, Path: body.Path})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Served-By", "go-spiffe")
	if err := json.NewEncoder(w).Encode(body); err != nil {
		printJSON(serverEvent{Event: "http_log", Error: err.Error()})
	}
}
