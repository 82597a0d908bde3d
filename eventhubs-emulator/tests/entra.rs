//! The emulator's Entra ID token checks: signature, issuer, audience,
//! expiry and role assignments; keys from PEM, a JWKS file and a JWKS URL
//! (served here by a one-shot loopback HTTP server); Config.json's
//! `EntraId` section. Tokens are signed with ring with the OpenSSL-made
//! fixture key of `eventhubs-proto/tests/fixtures/identity`.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use eventhubs_emulator::entra::{
    EntraIdConfig, JwtRights, KeySource, RoleAssignment, TrustedIssuer, NOT_ENABLED,
};
use eventhubs_emulator::EmulatorConfig;
use eventhubs_proto::identity::ClientCertificate;
use ring::signature::RsaKeyPair;
use serde_json::{json, Value};

const NOW: u64 = 1_700_000_000;
const ISSUER: &str = "https://sts.windows.net/72f988bf-86f1-41af-91ab-2d7cd011db47/";

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../eventhubs-proto/tests/fixtures/identity")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).expect("fixture")
}

fn certificate(key: &str) -> ClientCertificate {
    let cert = if key == "leaf.key.pem" {
        "leaf.pem"
    } else {
        "ca.pem"
    };
    let mut pem = read(cert);
    pem.extend(read(key));
    ClientCertificate::from_pem(&pem, None).expect("fixture certificate")
}

fn sign(key: &str, header: Value, claims: Value) -> String {
    let c = certificate(key);
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let pair = RsaKeyPair::from_der(c.private_key().as_bytes()).unwrap();
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn claims(oid: &str) -> Value {
    json!({
        "aud": "https://eventhubs.azure.net",
        "iss": ISSUER,
        "iat": NOW - 10,
        "nbf": NOW - 10,
        "exp": NOW + 3600,
        "oid": oid,
        "appid": format!("app-of-{oid}"),
        "tid": "72f988bf-86f1-41af-91ab-2d7cd011db47",
    })
}

fn token(oid: &str) -> String {
    sign(
        "leaf.key.pem",
        json!({"alg": "RS256", "typ": "JWT"}),
        claims(oid),
    )
}

fn config() -> EntraIdConfig {
    let mut c = EntraIdConfig::new()
        .trust(TrustedIssuer::new(
            ISSUER,
            KeySource::PublicKeyFile(fixture("leaf.pub.pem")),
        ))
        .assign(
            RoleAssignment::new(
                "sender-oid",
                JwtRights::from_role("Azure Event Hubs Data Sender").unwrap(),
            )
            .on_hubs(["eh1"]),
        )
        .assign(RoleAssignment::new(
            "app-of-owner",
            JwtRights::from_role("Manage").unwrap(),
        ));
    c.load_keys().expect("keys");
    c
}

#[test]
fn a_valid_token_grants_its_roles_on_its_hubs() {
    let c = config();
    let g = c.check(&token("sender-oid"), "eh1", NOW).expect("accepted");
    assert_eq!(
        g.rights,
        JwtRights {
            send: true,
            listen: false,
            manage: false
        }
    );
    assert_eq!(g.expires_unix, NOW + 3600);
    assert_eq!(g.principal, "sender-oid");
    // By application id, on every hub.
    let g = c
        .check(&token("owner"), "EH2", NOW)
        .expect("accepted by appid");
    assert_eq!(
        g.rights,
        JwtRights {
            send: true,
            listen: true,
            manage: true
        }
    );
    // The sender has no role on another hub.
    let e = c.check(&token("sender-oid"), "eh2", NOW).unwrap_err();
    assert!(
        e.starts_with("Unauthorized") && e.contains("sender-oid"),
        "{e}"
    );
    let e = c.check(&token("stranger"), "eh1", NOW).unwrap_err();
    assert!(e.starts_with("Unauthorized"), "{e}");
}

#[test]
fn refusals_say_why() {
    let c = config();
    let refuse = |t: String, needle: &str| {
        let e = c.check(&t, "eh1", NOW).unwrap_err();
        assert!(e.contains(needle), "{needle}: {e}");
    };
    let h = json!({"alg": "RS256", "typ": "JWT"});
    let with = |k: &str, v: Value| {
        let mut cl = claims("sender-oid");
        cl[k] = v;
        cl
    };
    // Signed by another key (the CA's).
    refuse(
        sign("ca.key.pem", h.clone(), claims("sender-oid")),
        "InvalidSignature",
    );
    refuse(
        sign(
            "leaf.key.pem",
            h.clone(),
            with("iss", json!("https://evil.example/")),
        ),
        "InvalidIssuer",
    );
    refuse(
        sign(
            "leaf.key.pem",
            h.clone(),
            with("aud", json!("https://storage.azure.com")),
        ),
        "InvalidAudience",
    );
    refuse(
        sign("leaf.key.pem", h.clone(), with("exp", json!(NOW))),
        "ExpiredToken",
    );
    refuse(
        sign("leaf.key.pem", h.clone(), with("nbf", json!(NOW + 600))),
        "not valid yet",
    );
    refuse(
        sign(
            "leaf.key.pem",
            json!({"alg": "HS256"}),
            claims("sender-oid"),
        ),
        "RS256",
    );
    refuse(
        sign("leaf.key.pem", json!({"alg": "none"}), claims("sender-oid")),
        "RS256",
    );
    refuse("not-a-jwt".into(), "InvalidToken");
    // A token changed after signing.
    let t = token("sender-oid");
    let mut parts: Vec<&str> = t.split('.').collect();
    let forged = URL_SAFE_NO_PAD.encode(claims("app-of-owner").to_string());
    parts[1] = &forged;
    refuse(parts.join("."), "InvalidSignature");
    // Audience variants SDKs end up with are accepted.
    for aud in [
        json!("https://eventhubs.azure.net/"),
        json!(["x", "https://eventhubs.azure.net"]),
    ] {
        c.check(
            &sign("leaf.key.pem", h.clone(), with("aud", aud.clone())),
            "eh1",
            NOW,
        )
        .unwrap_or_else(|e| panic!("{aud}: {e}"));
    }
}

#[test]
fn keys_from_jwks_file_and_kid_selection() {
    let c = certificate("leaf.key.pem");
    let pk = c.public_key();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "other", "n": URL_SAFE_NO_PAD.encode(&certificate("ca.key.pem").public_key().modulus), "e": "AQAB"},
        {"kty": "RSA", "kid": "k1", "n": URL_SAFE_NO_PAD.encode(&pk.modulus), "e": URL_SAFE_NO_PAD.encode(&pk.exponent)},
    ]});
    let dir = std::env::temp_dir().join(format!("eh-entra-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("jwks.json");
    std::fs::write(&file, jwks.to_string()).unwrap();
    let mut cfg = EntraIdConfig::new()
        .trust(TrustedIssuer::new(ISSUER, KeySource::JwksFile(file)))
        .assign(RoleAssignment::new(
            "sender-oid",
            JwtRights::from_role("Send").unwrap(),
        ));
    cfg.load_keys().unwrap();
    assert_eq!(cfg.issuers[0].keys().len(), 2);
    let ok = sign(
        "leaf.key.pem",
        json!({"alg": "RS256", "kid": "k1"}),
        claims("sender-oid"),
    );
    cfg.check(&ok, "eh1", NOW).expect("k1 verifies");
    let wrong_kid = sign(
        "leaf.key.pem",
        json!({"alg": "RS256", "kid": "other"}),
        claims("sender-oid"),
    );
    assert!(cfg
        .check(&wrong_kid, "eh1", NOW)
        .unwrap_err()
        .contains("InvalidSignature"));
    let unknown = sign(
        "leaf.key.pem",
        json!({"alg": "RS256", "kid": "nope"}),
        claims("sender-oid"),
    );
    assert!(cfg
        .check(&unknown, "eh1", NOW)
        .unwrap_err()
        .contains("no key"));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn keys_from_a_jwks_url_on_loopback() {
    let pk = certificate("leaf.key.pem").public_key().clone();
    let body = json!({"keys": [{"kty": "RSA", "kid": "k", "n": URL_SAFE_NO_PAD.encode(&pk.modulus), "e": URL_SAFE_NO_PAD.encode(&pk.exponent)}]}).to_string();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut buf).unwrap();
            req.extend_from_slice(&buf[..n]);
        }
        // Chunked, as express sends it.
        let reply = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{body}\r\n0\r\n\r\n",
            body.len()
        );
        s.write_all(reply.as_bytes()).unwrap();
        String::from_utf8(req).unwrap()
    });
    let mut cfg = EntraIdConfig::new().trust(TrustedIssuer::new(
        ISSUER,
        KeySource::JwksUrl(format!("http://127.0.0.1:{port}/jwks")),
    ));
    cfg.load_keys().expect("fetched");
    assert_eq!(cfg.issuers[0].keys()[0].key, pk);
    let request = server.join().unwrap();
    assert!(request.starts_with("GET /jwks HTTP/1.1\r\n"), "{request}");

    // Not loopback, not http, nobody listening: errors that say so.
    for (url, needle) in [
        ("https://127.0.0.1:1/jwks", "only http://"),
        ("http://127.0.0.1:1/jwks", "cannot fetch"),
    ] {
        let mut cfg =
            EntraIdConfig::new().trust(TrustedIssuer::new(ISSUER, KeySource::JwksUrl(url.into())));
        let e = cfg.load_keys().unwrap_err();
        assert!(e.contains(needle), "{url}: {e}");
    }
}

#[test]
fn config_json_entra_id_section() {
    let pem = String::from_utf8(read("leaf.pub.pem")).unwrap();
    let json = json!({"UserConfig": {
        "NamespaceConfig": [{"Type": "EventHub", "Name": "ns", "Entities": [{"Name": "eh1", "PartitionCount": 1}]}],
        "EntraId": {
            "Issuers": [{"Issuer": ISSUER, "PublicKeyPem": pem}],
            "RoleAssignments": [
                {"Principal": "sender-oid", "Roles": ["Azure Event Hubs Data Sender", "Listen"], "Hubs": ["eh1"]},
                {"Principal": "owner", "Roles": ["Azure Event Hubs Data Owner"]}
            ]
        }
    }});
    let mut c = EmulatorConfig::from_json(&json.to_string()).expect("valid");
    let entra = c.entra_id.as_mut().expect("section read");
    entra.load_keys().unwrap();
    let g = entra.check(&token("sender-oid"), "eh1", NOW).unwrap();
    assert_eq!(
        g.rights,
        JwtRights {
            send: true,
            listen: true,
            manage: false
        }
    );
    assert_eq!(entra.role_assignments[1].hubs, ["*"]);

    let bad = |section: Value, needle: &str| {
        let mut j = json.clone();
        j["UserConfig"]["EntraId"] = section;
        let e = EmulatorConfig::from_json(&j.to_string())
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{needle}: {e}");
    };
    bad(json!({"Issuers": [{"Issuer": "x"}]}), "exactly one of");
    bad(
        json!({"Issuers": [{"Issuer": "x", "JwksUrl": "a", "JwksFile": "b"}]}),
        "exactly one of",
    );
    bad(
        json!({"RoleAssignments": [{"Principal": "p", "Roles": ["Reader"]}]}),
        "Reader",
    );
    bad(json!({"Issuer": []}), "not valid");
    assert!(EmulatorConfig::default().entra_id.is_none());
    assert!(NOT_ENABLED.contains("EntraId"));
}

/// The management API (`eventhubs_emulator::management`) takes the same
/// tokens, as `Bearer` or bare, and needs Manage on the path's hub.
#[test]
fn management_requests_with_entra_id_tokens() {
    use eventhubs_emulator::management::handle;
    use eventhubs_emulator::{Broker, Now};
    use eventhubs_proto::management::{HubDescription, ManagementEndpoint, PutMode};

    let config = EmulatorConfig::default().with_entra_id(
        config().assign(
            RoleAssignment::new("eh1-manager", JwtRights::from_role("Manage").unwrap())
                .on_hubs(["eh1"]),
        ),
    );
    let now = Now {
        instant: std::time::Instant::now(),
        unix_ms: NOW as i64 * 1000,
    };
    let mut broker = Broker::new(config, now);
    let endpoint = ManagementEndpoint::parse("http://127.0.0.1:5300").unwrap();
    let mut status = |mut request: http::Request<bytes::Bytes>, auth: String| {
        request
            .headers_mut()
            .insert("authorization", auth.parse().unwrap());
        handle(&mut broker, now, &request).status().as_u16()
    };
    let owner = token("owner");
    let create = || {
        endpoint
            .put_hub(
                "jwt-hub",
                &HubDescription::new().with_partition_count(2),
                PutMode::Create,
            )
            .unwrap()
    };
    // Data Owner everywhere (by appid): create, list; bare as Go sends it.
    assert_eq!(status(create(), format!("Bearer {owner}")), 201);
    assert_eq!(status(endpoint.list_hubs().unwrap(), owner.clone()), 200);
    // Manage on eh1 only: eh1 yes, another hub or the namespace list no.
    let eh1 = token("eh1-manager");
    assert_eq!(
        status(endpoint.get_hub("eh1").unwrap(), format!("Bearer {eh1}")),
        200
    );
    assert_eq!(
        status(
            endpoint.get_hub("jwt-hub").unwrap(),
            format!("Bearer {eh1}")
        ),
        401
    );
    assert_eq!(
        status(endpoint.list_hubs().unwrap(), format!("Bearer {eh1}")),
        401
    );
    // A sender has no Manage; a token of an untrusted key none at all.
    let sender = token("sender-oid");
    assert_eq!(
        status(endpoint.get_hub("eh1").unwrap(), format!("Bearer {sender}")),
        401
    );
    let forged = sign("ca.key.pem", json!({"alg": "RS256"}), claims("owner"));
    assert_eq!(
        status(
            endpoint.delete_hub("jwt-hub").unwrap(),
            format!("Bearer {forged}")
        ),
        401
    );
    assert_eq!(
        status(
            endpoint.delete_hub("jwt-hub").unwrap(),
            format!("Bearer {owner}")
        ),
        200
    );
}
