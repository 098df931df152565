package main

import (
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type verdict struct {
	OK    bool   `json:"ok"`
	ID    string `json:"id,omitempty"`
	Error string `json:"error,omitempty"`
}

type x509Result struct {
	// Verify is x509svid.ParseAndVerify over the chain against the bundles: what a go-spiffe peer does
	// with the certificates it is presented.
	Verify verdict `json:"verify"`
	// Parse is x509svid.Parse of the chain and key (only with -key): what go-spiffe requires of an SVID
	// it would hold and present itself.
	Parse *verdict `json:"parse,omitempty"`
}

// runVerifyX509 verifies a PEM chain (leaf first) with go-spiffe against one or more trust domains' bundles.
func runVerifyX509(args []string) error {
	fs := flag.NewFlagSet("verify-x509", flag.ContinueOnError)
	chainFile := fs.String("chain", "", "the leaf then intermediates (PEM)")
	keyFile := fs.String("key", "", "the leaf's private key (PEM): also run x509svid.Parse")
	bundles := bundleFlags{}
	fs.Var(bundles, "bundle", "TD=FILE: the X.509 bundle of a trust domain (PEM; repeatable)")
	at := fs.String("time", "", "verify at this time (RFC 3339) instead of now")
	if err := parseFlags(fs, args, "chain", "bundle"); err != nil {
		return err
	}
	chainPEM, err := os.ReadFile(*chainFile)
	if err != nil {
		return err
	}
	set, err := bundles.x509Bundles()
	if err != nil {
		return err
	}
	var options []x509svid.VerifyOption
	if *at != "" {
		now, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return err
		}
		options = append(options, x509svid.WithTime(now))
	}

	var raw [][]byte
	for rest := chainPEM; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type == "CERTIFICATE" {
			raw = append(raw, block.Bytes)
		}
	}
	if len(raw) == 0 {
		return fmt.Errorf("-chain %s: no PEM CERTIFICATE block", *chainFile)
	}

	var result x509Result
	id, _, err := x509svid.ParseAndVerify(raw, set, options...)
	result.Verify = verdict{OK: err == nil, ID: idText(id.String(), err), Error: errorText(err)}
	if *keyFile != "" {
		keyPEM, err := os.ReadFile(*keyFile)
		if err != nil {
			return err
		}
		svid, err := x509svid.Parse(chainPEM, keyPEM)
		parsed := verdict{OK: err == nil, Error: errorText(err)}
		if err == nil {
			parsed.ID = svid.ID.String()
		}
		result.Parse = &parsed
	}
	printJSON(result)
	return nil
}

// idText is the ID only when verification succeeded: go-spiffe returns the leaf's claimed ID with some errors.
func idText(id string, err error) string {
	if err != nil {
		return ""
	}
	return id
}

type jwtResult struct {
	OK       bool           `json:"ok"`
	ID       string         `json:"id,omitempty"`
	Audience []string       `json:"audience,omitempty"`
	Expiry   string         `json:"expiry,omitempty"`
	Claims   map[string]any `json:"claims,omitempty"`
	Error    string         `json:"error,omitempty"`
}

// runVerifyJWT validates a JWT-SVID with jwtsvid.ParseAndValidate against JWKS bundles and audiences.
func runVerifyJWT(args []string) error {
	fs := flag.NewFlagSet("verify-jwt", flag.ContinueOnError)
	token := fs.String("token", "", "the JWT-SVID (compact JWS)")
	tokenFile := fs.String("token-file", "", "or: a file holding it")
	bundles := bundleFlags{}
	fs.Var(bundles, "bundle", "TD=FILE: the JWT bundle of a trust domain (JWKS JSON; repeatable)")
	var audiences listFlags
	fs.Var(&audiences, "audience", "an audience we accept (repeatable)")
	if err := parseFlags(fs, args, "bundle", "audience"); err != nil {
		return err
	}
	if (*token == "") == (*tokenFile == "") {
		return fmt.Errorf("give one of -token and -token-file")
	}
	if *tokenFile != "" {
		text, err := os.ReadFile(*tokenFile)
		if err != nil {
			return err
		}
		*token = strings.TrimSpace(string(text))
	}
	set, err := bundles.jwtBundles()
	if err != nil {
		return err
	}
	svid, err := jwtsvid.ParseAndValidate(*token, set, audiences)
	if err != nil {
		printJSON(jwtResult{Error: err.Error()})
		return nil
	}
	printJSON(jwtResult{
		OK:       true,
		ID:       svid.ID.String(),
		Audience: svid.Audience,
		Expiry:   svid.Expiry.Format(time.RFC3339),
		Claims:   svid.Claims,
	})
	return nil
}
