//! Entra ID pieces of the core: certificates from OpenSSL-written PEM and
//! PKCS#12 files (`tests/fixtures/identity/gen.sh`), client assertions
//! signed and verified with ring, token requests byte for byte, responses
//! of every endpoint shape, retry rules and the environment chain.

use std::collections::HashMap;
use std::path::PathBuf;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use eventhubs_proto::eventhubs::Environment;
use eventhubs_proto::identity::certificate::certificate_rsa_key;
use eventhubs_proto::identity::env::*;
use eventhubs_proto::identity::jwt::parse_jwks;
use eventhubs_proto::identity::request::{
    form_encode, resource_to_scope, scope_to_resource, Method,
};
use eventhubs_proto::identity::response::parse_date;
use eventhubs_proto::identity::*;
use ring::signature::{RsaKeyPair, RsaPublicKeyComponents};

const PASSWORD: &str = "fixture-pass";
const NOW: u64 = 1_700_000_000;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/identity")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cat(names: &[&str]) -> Vec<u8> {
    names.iter().flat_map(|n| fixture(n)).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn leaf_der() -> Vec<u8> {
    fixture("leaf.der")
}

fn expected_sha1() -> String {
    String::from_utf8(fixture("leaf.sha1.txt"))
        .unwrap()
        .trim()
        .to_owned()
}

// ----- certificates -----

#[test]
fn pem_certificate_with_pkcs8_pkcs1_and_encrypted_keys() {
    let pkcs8 =
        ClientCertificate::from_pem(&cat(&["leaf.pem", "leaf.key.pem"]), None).expect("pkcs8");
    let pkcs1 =
        ClientCertificate::from_pem(&cat(&["leaf.pkcs1.pem", "leaf.pem"]), None).expect("pkcs1");
    let encrypted =
        ClientCertificate::from_pem(&cat(&["leaf.encrypted.pem", "leaf.pem"]), Some(PASSWORD))
            .expect("encrypted pkcs8");
    for c in [&pkcs8, &pkcs1, &encrypted] {
        assert_eq!(c.leaf(), &leaf_der()[..]);
        assert_eq!(c.private_key(), pkcs8.private_key());
        assert_eq!(c.chain().len(), 1);
        assert_eq!(c.public_key().bits(), 2048);
    }
    // ring takes the key as it comes out.
    RsaKeyPair::from_der(pkcs8.private_key().as_bytes()).expect("ring reads the PKCS#1 key");
    assert_eq!(
        ClientCertificate::from_pem(&cat(&["leaf.encrypted.pem", "leaf.pem"]), None),
        Err(CertificateError::PasswordRequired)
    );
    assert_eq!(
        ClientCertificate::from_pem(&cat(&["leaf.encrypted.pem", "leaf.pem"]), Some("nope")),
        Err(CertificateError::WrongPassword)
    );
}

#[test]
fn pem_mistakes_are_named() {
    assert_eq!(
        ClientCertificate::from_pem(&fixture("leaf.pem"), None),
        Err(CertificateError::NoPrivateKey)
    );
    assert_eq!(
        ClientCertificate::from_pem(&fixture("leaf.key.pem"), None),
        Err(CertificateError::NoCertificate)
    );
    assert_eq!(
        ClientCertificate::from_pem(&cat(&["ca.pem", "leaf.key.pem"]), None),
        Err(CertificateError::KeyMismatch)
    );
    assert!(matches!(
        ClientCertificate::from_pem(&cat(&["leaf.pem", "ec.key.pem"]), None),
        Err(CertificateError::NotRsa(_))
    ));
    assert!(matches!(
        ClientCertificate::from_pem(&cat(&["leaf.pem", "leaf.key.pem", "ca.key.pem"]), None),
        Err(CertificateError::SeveralKeys(2))
    ));
    let legacy = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00112233445566778899AABBCCDDEEFF\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    assert!(matches!(
        ClientCertificate::from_pem(legacy, Some("x")),
        Err(CertificateError::Unsupported(_))
    ));
}

#[test]
fn pkcs12_modern_legacy_and_passwordless() {
    let reference = ClientCertificate::from_pem(&cat(&["leaf.pem", "leaf.key.pem"]), None).unwrap();
    let chain = ClientCertificate::from_pkcs12(&fixture("chain.aes.pfx"), PASSWORD)
        .expect("AES-256 PBES2, HMAC-SHA-256");
    assert_eq!(
        chain.leaf(),
        reference.leaf(),
        "the leaf is the key's certificate"
    );
    assert_eq!(chain.chain().len(), 2);
    let ca = pem::parse(fixture("ca.pem")).unwrap();
    assert_eq!(chain.chain()[1], ca.contents());
    assert_eq!(chain.private_key(), reference.private_key());

    let legacy = ClientCertificate::from_pkcs12(&fixture("leaf.legacy.pfx"), PASSWORD)
        .expect("RC2-40 certificates, 3DES key, HMAC-SHA-1");
    assert_eq!(legacy, reference);

    let nopass =
        ClientCertificate::from_pkcs12(&fixture("leaf.nopass.pfx"), "").expect("empty password");
    assert_eq!(nopass, reference);
    assert_eq!(
        ClientCertificate::from_bytes(&fixture("leaf.nopass.pfx"), None).expect("PFX sniffed"),
        reference
    );
    assert_eq!(
        ClientCertificate::from_bytes(&cat(&["leaf.key.pem", "leaf.pem"]), None)
            .expect("PEM sniffed"),
        reference
    );

    for (file, pw) in [
        ("chain.aes.pfx", "wrong"),
        ("leaf.legacy.pfx", ""),
        ("leaf.nopass.pfx", "x"),
    ] {
        assert_eq!(
            ClientCertificate::from_pkcs12(&fixture(file), pw),
            Err(CertificateError::WrongPassword),
            "{file}"
        );
    }
    // Damage anywhere is an error, never a panic.
    let pfx = fixture("chain.aes.pfx");
    for cut in (0..pfx.len()).step_by(97) {
        assert!(
            ClientCertificate::from_pkcs12(&pfx[..cut], PASSWORD).is_err(),
            "cut at {cut}"
        );
    }
    let mut flipped = pfx.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x55;
    assert!(ClientCertificate::from_pkcs12(&flipped, PASSWORD).is_err());
}

#[test]
fn thumbprints_match_openssl() {
    let c = ClientCertificate::from_pem(&cat(&["leaf.pem", "leaf.key.pem"]), None).unwrap();
    assert_eq!(hex(&c.thumbprint_sha1()), expected_sha1());
    let sha256 = String::from_utf8(fixture("leaf.sha256.txt")).unwrap();
    assert_eq!(hex(&c.thumbprint_sha256()), sha256.trim());
    assert_eq!(c.x5t(), URL_SAFE_NO_PAD.encode(c.thumbprint_sha1()));
    assert_eq!(c.x5t_s256(), URL_SAFE_NO_PAD.encode(c.thumbprint_sha256()));
    assert_eq!(c.x5c(), vec![STANDARD.encode(leaf_der())]);
    assert_eq!(
        certificate_rsa_key(&leaf_der()).unwrap().as_ref(),
        Some(c.public_key())
    );
}

#[test]
fn debug_never_shows_the_key() {
    let c = ClientCertificate::from_pem(&cat(&["leaf.pem", "leaf.key.pem"]), None).unwrap();
    let shown = format!("{c:?} {:?}", c.private_key());
    assert!(shown.contains(&c.x5t()), "{shown}");
    let key_b64 = STANDARD.encode(c.private_key().as_bytes());
    assert!(!shown.contains(&key_b64[..40]));
    assert!(!shown.contains(&hex(&c.private_key().as_bytes()[..32])));
    assert!(shown.contains("redacted"));
}

// ----- client assertion -----

fn sign(c: &ClientCertificate, msg: &[u8]) -> Vec<u8> {
    let key = RsaKeyPair::from_der(c.private_key().as_bytes()).unwrap();
    let mut sig = vec![0; key.public().modulus_len()];
    key.sign(
        &ring::signature::RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        msg,
        &mut sig,
    )
    .unwrap();
    sig
}

#[test]
fn client_assertion_header_claims_and_signature() {
    let c = ClientCertificate::from_pkcs12(&fixture("chain.aes.pfx"), PASSWORD).unwrap();
    let client =
        ConfidentialClient::new(&Cloud::default(), "contoso.onmicrosoft.com", "app-id").unwrap();
    let aud = client.token_url();
    assert_eq!(
        aud,
        "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    );
    let unsigned = UnsignedJwt::client_assertion(
        &c,
        client.client_id(),
        &aud,
        NOW,
        0x0123_4567_89ab_cdef_0123_4567_89ab_cdef,
        AssertionOptions::default(),
    );
    assert_eq!(unsigned.expires_at(), NOW + 600);
    let sig = sign(&c, unsigned.signing_input());
    let assertion = unsigned.sign_with(&sig);
    assert_eq!(format!("{assertion:?}"), "<redacted>");

    let jwt = DecodedJwt::parse(assertion.expose()).expect("a JWS");
    assert_eq!(jwt.header_str("alg"), Some("RS256"));
    assert_eq!(jwt.header_str("typ"), Some("JWT"));
    assert_eq!(jwt.header_str("x5t"), Some(c.x5t().as_str()));
    assert!(jwt.header.get("x5t#S256").is_none());
    assert!(jwt.header.get("x5c").is_none());
    assert_eq!(jwt.claim_str("aud"), Some(aud.as_str()));
    assert_eq!(jwt.claim_str("iss"), Some("app-id"));
    assert_eq!(jwt.claim_str("sub"), Some("app-id"));
    assert_eq!(
        jwt.claim_str("jti"),
        Some("01234567-89ab-4def-8123-456789abcdef")
    );
    assert_eq!(jwt.claim_time("nbf"), Some(NOW));
    assert_eq!(jwt.claim_time("iat"), Some(NOW));
    assert_eq!(jwt.claim_time("exp"), Some(NOW + 600));
    // The thumbprint decodes to OpenSSL's fingerprint.
    let x5t = URL_SAFE_NO_PAD
        .decode(jwt.header_str("x5t").unwrap())
        .unwrap();
    assert_eq!(hex(&x5t), expected_sha1());
    // Three unpadded base64url segments; the signature verifies.
    assert_eq!(assertion.expose().split('.').count(), 3);
    assert!(!assertion.expose().contains('='));
    let pk = c.public_key();
    RsaPublicKeyComponents {
        n: &pk.modulus,
        e: &pk.exponent,
    }
    .verify(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        jwt.signing_input(),
        jwt.signature(),
    )
    .expect("RS256 verifies with the certificate's key");

    let with_chain = UnsignedJwt::client_assertion(
        &c,
        "app-id",
        &aud,
        NOW,
        1,
        AssertionOptions {
            thumbprint: ThumbprintHeader::Both,
            send_chain: true,
            lifetime: std::time::Duration::from_secs(300),
        },
    );
    let jwt = DecodedJwt::parse(with_chain.sign_with(b"sig").expose()).unwrap();
    assert_eq!(jwt.header_str("x5t#S256"), Some(c.x5t_s256().as_str()));
    assert_eq!(jwt.header_str("x5t"), Some(c.x5t().as_str()));
    let x5c: Vec<&str> = jwt.header["x5c"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert_eq!(x5c.len(), 2);
    assert_eq!(STANDARD.decode(x5c[0]).unwrap(), c.leaf());
    assert_eq!(jwt.claim_time("exp"), Some(NOW + 300));
    let jwt2 =
        UnsignedJwt::client_assertion(&c, "app-id", &aud, NOW, 2, AssertionOptions::default());
    assert_ne!(
        DecodedJwt::parse(jwt2.sign_with(b"s").expose())
            .unwrap()
            .claim_str("jti"),
        jwt.claim_str("jti"),
        "jti comes from the caller's bits"
    );
}

#[test]
fn jwt_reading_refuses_garbage() {
    for bad in [
        "",
        "a.b",
        "a.b.c.d",
        "!!.e30.",
        "e30.!!.",
        "W10.e30.",
        "e30.e30.***",
    ] {
        assert!(DecodedJwt::parse(bad).is_err(), "{bad}");
    }
    let ok = DecodedJwt::parse("e30.eyJhdWQiOlsiYSIsImIiXSwiZXhwIjoxLjVlOX0.").unwrap();
    assert_eq!(ok.audiences(), vec!["a", "b"]);
    assert_eq!(ok.claim_time("exp"), Some(1_500_000_000));
    assert!(DecodedJwt::parse(&"a".repeat(70_000)).is_err());
}

#[test]
fn jwks_rsa_keys() {
    let c = ClientCertificate::from_pem(&cat(&["leaf.pem", "leaf.key.pem"]), None).unwrap();
    let pk = c.public_key();
    let doc = serde_json::json!({"keys": [
        {"kty": "EC", "crv": "P-256", "x": "AA", "y": "AA"},
        {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
        {"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig",
         "n": URL_SAFE_NO_PAD.encode(&pk.modulus), "e": URL_SAFE_NO_PAD.encode(&pk.exponent),
         "x5c": [STANDARD.encode(c.leaf())]}
    ]});
    let keys = parse_jwks(doc.to_string().as_bytes()).unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].kid.as_deref(), Some("k1"));
    assert_eq!(&keys[0].key, pk);
    assert_eq!(keys[0].certificate.as_deref(), Some(c.leaf()));
    assert!(parse_jwks(b"[]").is_err());
    assert!(parse_jwks(br#"{"keys":[{"kty":"RSA"}]}"#).is_err());
}

// ----- requests -----

fn body(r: &TokenHttpRequest) -> String {
    String::from_utf8(r.body().to_vec()).unwrap()
}

#[test]
fn client_secret_request_is_the_v2_form() {
    let client = ConfidentialClient::new(
        &Cloud::default(),
        "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "00000000-aaaa-bbbb-cccc-111111111111",
    )
    .unwrap();
    let secret = Secret::new("s3cr3t~+/= value");
    let r = client.secret_request(&secret, EVENTHUBS_SCOPE);
    assert_eq!(r.method(), Method::Post);
    assert_eq!(r.endpoint(), TokenEndpoint::EntraId);
    assert_eq!(
        r.url(),
        "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token"
    );
    assert_eq!(
        body(&r),
        "client_id=00000000-aaaa-bbbb-cccc-111111111111&grant_type=client_credentials&client_secret=s3cr3t~%2B%2F%3D+value&scope=https%3A%2F%2Feventhubs.azure.net%2F.default"
    );
    assert!(r.headers().contains(&(
        "Content-Type",
        "application/x-www-form-urlencoded".to_owned()
    )));
    let shown = format!("{r:?}");
    assert!(!shown.contains("s3cr3t"), "{shown}");
    assert!(shown.contains("oauth2/v2.0/token"));
}

#[test]
fn assertion_and_workload_identity_requests() {
    let cloud = Cloud::from_environment(Environment::China);
    let client = ConfidentialClient::new(&cloud, "tenant", "app").unwrap();
    let assertion = Secret::new("eyJhbGciOi.eyJzdWIiOi.c2ln");
    let r = client.assertion_request(&assertion, "https://eventhubs.azure.net//.default");
    assert_eq!(
        r.url(),
        "https://login.chinacloudapi.cn/tenant/oauth2/v2.0/token"
    );
    assert_eq!(
        body(&r),
        "client_id=app&grant_type=client_credentials&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=eyJhbGciOi.eyJzdWIiOi.c2ln&scope=https%3A%2F%2Feventhubs.azure.net%2F%2F.default"
    );
    assert!(!format!("{r:?}").contains("eyJhbGciOi"));
    assert!(ConfidentialClient::new(&cloud, "bad/tenant", "app").is_err());
    assert!(ConfidentialClient::new(&cloud, "t", " ").is_err());
}

#[test]
fn managed_identity_requests() {
    let resource = scope_to_resource(EVENTHUBS_SCOPE);
    assert_eq!(resource, "https://eventhubs.azure.net");
    assert_eq!(
        scope_to_resource("https://eventhubs.azure.net//.default"),
        resource
    );
    assert_eq!(resource_to_scope(resource), EVENTHUBS_SCOPE);
    let imds = ManagedIdentitySource::imds();
    let r = imds.request(resource, &ManagedIdentityId::SystemAssigned);
    assert_eq!(r.method(), Method::Get);
    assert_eq!(
        r.url(),
        "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Feventhubs.azure.net"
    );
    assert_eq!(r.headers(), &[("Metadata", "true".to_owned())]);
    assert!(r.body().is_empty());
    let ids = [
        (ManagedIdentityId::ClientId("cid".into()), "&client_id=cid"),
        (ManagedIdentityId::ObjectId("oid".into()), "&object_id=oid"),
        (
            ManagedIdentityId::ResourceId("/subscriptions/s/rg/x".into()),
            "&msi_res_id=%2Fsubscriptions%2Fs%2Frg%2Fx",
        ),
    ];
    for (id, tail) in &ids {
        assert!(imds.request(resource, id).url().ends_with(tail), "{id:?}");
    }
    let pod = ManagedIdentitySource::imds_at_host("http://127.0.0.1:8080/");
    assert!(pod
        .request(resource, &ManagedIdentityId::SystemAssigned)
        .url()
        .starts_with(
            "http://127.0.0.1:8080/metadata/identity/oauth2/token?api-version=2018-02-01&"
        ));

    let app = ManagedIdentitySource::AppService {
        endpoint: "http://127.0.0.1:41234/msi/token".into(),
        header: Secret::new("identity-header-secret"),
    };
    let r = app.request(resource, &ManagedIdentityId::ResourceId("/r".into()));
    assert_eq!(r.endpoint(), TokenEndpoint::AppService);
    assert_eq!(
        r.url(),
        "http://127.0.0.1:41234/msi/token?api-version=2019-08-01&resource=https%3A%2F%2Feventhubs.azure.net&mi_res_id=%2Fr"
    );
    assert_eq!(
        r.headers(),
        &[("X-IDENTITY-HEADER", "identity-header-secret".to_owned())]
    );
    assert!(r.is_secret_header("x-identity-header"));
    for shown in [format!("{r:?}"), format!("{app:?}")] {
        assert!(!shown.contains("identity-header-secret"), "{shown}");
    }
    assert_eq!(form_encode(&[("a b", "c&d=e")]), "a+b=c%26d%3De");
}

// ----- responses -----

fn ok(endpoint: TokenEndpoint, body: &str) -> AccessToken {
    parse_token_response(endpoint, 200, body.as_bytes(), NOW).expect(body)
}

#[test]
fn token_responses_of_every_endpoint() {
    // v2.0: numbers, refresh_in.
    let t = ok(
        TokenEndpoint::EntraId,
        r#"{"token_type":"Bearer","expires_in":3599,"ext_expires_in":3599,"refresh_in":1799,"access_token":"eyJ0.v2"}"#,
    );
    assert_eq!(
        (t.secret(), t.expires_on, t.refresh_on, t.obtained_at),
        ("eyJ0.v2", NOW + 3599, Some(NOW + 1799), NOW)
    );
    // v1: strings.
    let t = ok(
        TokenEndpoint::EntraId,
        r#"{"expires_in":"3600","expires_on":"1700003000","access_token":"v1"}"#,
    );
    assert_eq!(t.expires_on, 1_700_003_000);
    // IMDS: all strings.
    let t = ok(
        TokenEndpoint::Imds,
        r#"{"access_token":"imds","refresh_token":"","expires_in":"3599","expires_on":"1506484173","not_before":"1506480273","resource":"https://eventhubs.azure.net","token_type":"Bearer"}"#,
    );
    assert_eq!(t.expires_on, 1_506_484_173);
    // App Service 2019-08-01: expires_on a number or a string, no expires_in.
    assert_eq!(ok(TokenEndpoint::AppService, r#"{"access_token":"a","expires_on":1700001234,"resource":"r","token_type":"Bearer","client_id":"c"}"#).expires_on, 1_700_001_234);
    assert_eq!(
        ok(
            TokenEndpoint::AppService,
            r#"{"access_token":"a","expires_on":"1700001234"}"#
        )
        .expires_on,
        1_700_001_234
    );
    // App Service 2017-09-01: a US-culture date.
    assert_eq!(
        ok(
            TokenEndpoint::AppService,
            r#"{"access_token":"a","expires_on":"9/14/2017 12:00:00 PM +00:00"}"#
        )
        .expires_on,
        1_505_390_400
    );
    assert_eq!(
        ok(
            TokenEndpoint::AppService,
            r#"{"access_token":"a","expires_on":"2024-01-01T00:00:00Z"}"#
        )
        .expires_on,
        1_704_067_200
    );
    // Fractional seconds, ADFS's number expires_in.
    assert_eq!(
        ok(
            TokenEndpoint::EntraId,
            r#"{"access_token":"a","expires_in":60.5}"#
        )
        .expires_on,
        NOW + 60
    );
    assert!(format!("{t:?}").contains("<redacted>") && !format!("{t:?}").contains("imds"));
}

#[test]
fn dates() {
    assert_eq!(parse_date("1/1/1970 12:00:00 AM +00:00"), Some(0));
    assert_eq!(
        parse_date("12/31/2023 11:59:59 PM +00:00"),
        Some(1_704_067_199)
    );
    assert_eq!(
        parse_date("2/29/2024 1:02:03 PM +01:00"),
        Some(1_709_208_123)
    );
    assert_eq!(
        parse_date("2024-02-29T13:02:03.123+01:00"),
        Some(1_709_208_123)
    );
    assert_eq!(parse_date("2024-02-29 13:02:03Z"), Some(1_709_211_723));
    for bad in [
        "2/30/2023 1:00:00 PM +00:00",
        "13/1/2020 1:00:00 AM",
        "0:00",
        "2020-01-01",
        "1/1/2020 13:00:00 PM +00:00",
        "2020-01-01T00:00:00+25:00",
    ] {
        assert_eq!(parse_date(bad), None, "{bad}");
    }
}

#[test]
fn error_bodies_are_typed() {
    let entra = r#"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided. Ensure the secret being sent in the request is the client secret value. Trace ID: 1 Correlation ID: 2 Timestamp: 2024-01-01 00:00:00Z","error_codes":[7000215],"timestamp":"2024-01-01 00:00:00Z","trace_id":"1","correlation_id":"2","error_uri":"https://login.microsoftonline.com/error?code=7000215"}"#;
    let e = parse_token_response(TokenEndpoint::EntraId, 401, entra.as_bytes(), NOW).unwrap_err();
    match &e {
        CredentialError::Refused {
            status,
            error,
            description,
            error_codes,
            endpoint,
        } => {
            assert_eq!(*status, 401);
            assert_eq!(*endpoint, TokenEndpoint::EntraId);
            assert_eq!(error.as_deref(), Some("invalid_client"));
            assert!(description.as_deref().unwrap().starts_with("AADSTS7000215"));
            assert_eq!(error_codes, &[7000215]);
        }
        other => panic!("{other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("HTTP 401")
            && text.contains("invalid_client")
            && text.contains("AADSTS7000215"),
        "{text}"
    );
    assert!(!e.is_unavailable());

    // IMDS without the identity: unavailable, so a chain moves on.
    let e = parse_token_response(
        TokenEndpoint::Imds,
        400,
        br#"{"error":"invalid_request","error_description":"Identity not found"}"#,
        NOW,
    )
    .unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    assert!(e.to_string().contains("Identity not found"));
    let e = parse_token_response(TokenEndpoint::Imds, 403, b"connecting to 169.254.169.254:80: connecting to 169.254.169.254:80: dial tcp 169.254.169.254:80: connectex: A socket operation was attempted to an unreachable network.", NOW).unwrap_err();
    assert!(e.is_unavailable(), "{e}");
    let e = parse_token_response(TokenEndpoint::Imds, 500, b"{}", NOW).unwrap_err();
    assert!(!e.is_unavailable());

    // App Service's shape.
    let e = parse_token_response(TokenEndpoint::AppService, 400, br#"{"statusCode":400,"message":"Unable to load the proper Managed Identity.","correlationId":"x"}"#, NOW).unwrap_err();
    assert!(
        matches!(&e, CredentialError::Refused { description: Some(d), .. } if d.starts_with("Unable to load")),
        "{e:?}"
    );
    // Azure front-end shape and plain text.
    let e = parse_token_response(
        TokenEndpoint::AppService,
        500,
        br#"{"error":{"code":"InternalError","message":"boom"}}"#,
        NOW,
    )
    .unwrap_err();
    assert!(
        matches!(&e, CredentialError::Refused { error: Some(c), description: Some(d), .. } if c == "InternalError" && d == "boom")
    );
    let long = "x".repeat(5000);
    let e = parse_token_response(TokenEndpoint::EntraId, 502, long.as_bytes(), NOW).unwrap_err();
    assert!(e.to_string().len() < 600);

    // Success statuses that hold no token.
    for bad in [
        "",
        "[]",
        r#"{"expires_in":1}"#,
        r#"{"access_token":"","expires_in":1}"#,
        r#"{"access_token":"a"}"#,
        r#"{"access_token":"a","expires_on":"soon"}"#,
        r#"{"access_token":"a","expires_in":-5}"#,
    ] {
        assert!(
            matches!(
                parse_token_response(TokenEndpoint::EntraId, 200, bad.as_bytes(), NOW),
                Err(CredentialError::InvalidResponse { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn errors_are_scrubbed_of_secrets() {
    let secret = "TopSecretValue123";
    let echo = format!(
        r#"{{"error":"invalid_request","error_description":"bad client_secret={secret}"}}"#
    );
    let e = parse_token_response(TokenEndpoint::EntraId, 400, echo.as_bytes(), NOW)
        .unwrap_err()
        .scrub(secret);
    assert!(!format!("{e} {e:?}").contains(secret));
}

#[test]
fn freshness_covers_the_core_refresh_lead() {
    // A one-hour token: the core asks again 10 minutes before expiry; by
    // then the cache must fetch a new one.
    let t = AccessToken::new("t", NOW + 3600, NOW);
    assert!(t.is_fresh(NOW));
    assert!(t.is_fresh(NOW + 3600 - 11 * 60 - 1));
    assert!(!t.is_fresh(NOW + 3600 - 600));
    // A 60 s token: the core asks at 48 s (a fifth before expiry).
    let t = AccessToken::new("t", NOW + 60, NOW);
    assert!(t.is_fresh(NOW + 44));
    assert!(!t.is_fresh(NOW + 48));
    assert!(!t.is_fresh(NOW + 61));
    let mut t = AccessToken::new("t", NOW + 3600, NOW);
    t.refresh_on = Some(NOW + 100);
    assert!(!t.is_fresh(NOW + 100));
}

// ----- retry -----

#[test]
fn retry_rules_as_decisions() {
    use std::time::Duration;
    let s = |status| AttemptOutcome::Status {
        status,
        retry_after: None,
    };
    assert_eq!(
        RetryRules::ManagedIdentity.next_delay(1, s(500), Duration::ZERO),
        Some(Duration::from_secs(2))
    );
    assert_eq!(
        RetryRules::ManagedIdentity.next_delay(1, s(400), Duration::ZERO),
        None
    );
    assert_eq!(
        RetryRules::EntraId.next_delay(1, s(429), Duration::ZERO),
        Some(Duration::from_secs(1))
    );
    assert_eq!(
        RetryRules::EntraId.next_delay(1, s(401), Duration::ZERO),
        None
    );
}

// ----- clouds and environment -----

fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

#[test]
fn clouds() {
    let hosts: Vec<_> = Environment::ALL
        .iter()
        .map(|e| Cloud::from_environment(*e).authority_host().to_owned())
        .collect();
    assert_eq!(
        hosts,
        [
            "https://login.microsoftonline.com/",
            "https://login.chinacloudapi.cn/",
            "https://login.microsoftonline.us/",
            "https://login.microsoftonline.de/"
        ]
    );
    let c = Cloud::from_environment(Environment::UsGovernment);
    assert_eq!(c.namespace_suffix(), "servicebus.usgovcloudapi.net");
    assert_eq!(c.eventhubs_resource(), EVENTHUBS_RESOURCE);
    assert_eq!(c.eventhubs_scope(), EVENTHUBS_SCOPE);
    let c = c
        .with_authority_host("https://login.partner.microsoftonline.cn")
        .unwrap()
        .with_namespace_suffix(".example.net")
        .with_eventhubs_resource("https://eventhubs.chinacloudapi.cn/");
    assert_eq!(
        c.authority_host(),
        "https://login.partner.microsoftonline.cn/"
    );
    assert_eq!(c.namespace_suffix(), "example.net");
    assert_eq!(
        c.eventhubs_scope(),
        "https://eventhubs.chinacloudapi.cn/.default"
    );
    for ok in [
        "http://127.0.0.1:8080",
        "http://localhost:1/",
        "http://[::1]:9/",
    ] {
        assert!(Cloud::default().with_authority_host(ok).is_ok(), "{ok}");
    }
    for bad in [
        "http://login.example.com/",
        "ftp://x/",
        "login.microsoftonline.com",
        "https://",
    ] {
        assert!(Cloud::default().with_authority_host(bad).is_err(), "{bad}");
    }
}

#[test]
fn environment_chain_order() {
    let base = [(AZURE_TENANT_ID, "tenant"), (AZURE_CLIENT_ID, "app")];
    let names = |vars: &[(&str, &str)]| -> Vec<&'static str> {
        chain_from_env(env(vars))
            .expect("valid")
            .credentials
            .iter()
            .map(CredentialConfig::name)
            .collect()
    };
    assert_eq!(names(&[]), ["ManagedIdentityCredential"]);
    let mut v = base.to_vec();
    v.push((AZURE_CLIENT_SECRET, "s"));
    v.push((AZURE_CLIENT_CERTIFICATE_PATH, "/c.pem"));
    v.push((AZURE_FEDERATED_TOKEN_FILE, "/t"));
    assert_eq!(
        names(&v),
        [
            "ClientSecretCredential",
            "WorkloadIdentityCredential",
            "ManagedIdentityCredential"
        ]
    );
    let mut v = base.to_vec();
    v.push((AZURE_CERTIFICATE_PATH, "/legacy.pfx"));
    v.push((AZURE_CERTIFICATE_PASSWORD, "pw"));
    let chain = chain_from_env(env(&v)).unwrap();
    match &chain.credentials[0] {
        CredentialConfig::ClientCertificate {
            path,
            password,
            send_chain,
            client,
        } => {
            assert_eq!(path, "/legacy.pfx");
            assert_eq!(password.as_ref().map(Secret::expose), Some("pw"));
            assert!(!send_chain);
            assert_eq!(
                client.token_url(),
                "https://login.microsoftonline.com/tenant/oauth2/v2.0/token"
            );
        }
        other => panic!("{other:?}"),
    }
    // Managed identity: user-assigned by AZURE_CLIENT_ID; App Service when its pair is set.
    match chain.credentials.last().unwrap() {
        CredentialConfig::ManagedIdentity { source, id } => {
            assert_eq!(source, &ManagedIdentitySource::imds());
            assert_eq!(id, &ManagedIdentityId::ClientId("app".into()));
        }
        other => panic!("{other:?}"),
    }
    let chain = chain_from_env(env(&[
        (IDENTITY_ENDPOINT, "http://127.0.0.1:1/t"),
        (IDENTITY_HEADER, "h"),
    ]))
    .unwrap();
    assert!(matches!(
        &chain.credentials[0],
        CredentialConfig::ManagedIdentity {
            source: ManagedIdentitySource::AppService { .. },
            id: ManagedIdentityId::SystemAssigned
        }
    ));
    let chain = chain_from_env(env(&[(
        AZURE_POD_IDENTITY_AUTHORITY_HOST,
        "http://127.0.0.1:2",
    )]))
    .unwrap();
    assert!(
        matches!(&chain.credentials[0], CredentialConfig::ManagedIdentity { source: ManagedIdentitySource::Imds { endpoint }, .. } if endpoint == "http://127.0.0.1:2/metadata/identity/oauth2/token")
    );

    // Today's certificate names win; a disagreement is refused.
    let mut v = base.to_vec();
    v.push((AZURE_CLIENT_CERTIFICATE_PATH, "/new.pem"));
    v.push((AZURE_CLIENT_SEND_CERTIFICATE_CHAIN, "true"));
    let chain = chain_from_env(env(&v)).unwrap();
    assert!(
        matches!(&chain.credentials[0], CredentialConfig::ClientCertificate { path, send_chain: true, .. } if path == "/new.pem")
    );
    v.push((AZURE_CERTIFICATE_PATH, "/old.pfx"));
    assert_eq!(
        chain_from_env(env(&v)),
        Err(EnvVarError::Mismatch {
            first: AZURE_CLIENT_CERTIFICATE_PATH,
            second: AZURE_CERTIFICATE_PATH
        })
    );
}

#[test]
fn environment_clouds_and_mistakes() {
    let chain = chain_from_env(env(&[
        (AZURE_ENVIRONMENT, "AzureUSGovernmentCloud"),
        (AZURE_TENANT_ID, "t"),
        (AZURE_CLIENT_ID, "c"),
        (AZURE_CLIENT_SECRET, "s"),
    ]))
    .unwrap();
    assert_eq!(
        chain.cloud.authority_host(),
        "https://login.microsoftonline.us/"
    );
    let chain = chain_from_env(env(&[
        (AZURE_ENVIRONMENT, "AzureChinaCloud"),
        (AZURE_AUTHORITY_HOST, "http://127.0.0.1:5555"),
        (AZURE_TENANT_ID, "t"),
        (AZURE_CLIENT_ID, "c"),
        (AZURE_FEDERATED_TOKEN_FILE, "/var/run/secrets/token"),
    ]))
    .unwrap();
    assert_eq!(
        chain.cloud.namespace_suffix(),
        "servicebus.chinacloudapi.cn"
    );
    match &chain.credentials[0] {
        CredentialConfig::WorkloadIdentity { client, token_file } => {
            assert_eq!(
                client.token_url(),
                "http://127.0.0.1:5555/t/oauth2/v2.0/token"
            );
            assert_eq!(token_file, "/var/run/secrets/token");
        }
        other => panic!("{other:?}"),
    }
    let err = |vars: &[(&str, &str)]| chain_from_env(env(vars)).unwrap_err();
    assert_eq!(
        err(&[(AZURE_CLIENT_SECRET, "s"), (AZURE_CLIENT_ID, "c")]),
        EnvVarError::Incomplete {
            present: AZURE_CLIENT_SECRET,
            missing: AZURE_TENANT_ID
        }
    );
    assert_eq!(
        err(&[(AZURE_FEDERATED_TOKEN_FILE, "/t"), (AZURE_TENANT_ID, "t")]),
        EnvVarError::Incomplete {
            present: AZURE_FEDERATED_TOKEN_FILE,
            missing: AZURE_CLIENT_ID
        }
    );
    assert!(matches!(
        err(&[(AZURE_ENVIRONMENT, "Mars")]),
        EnvVarError::Invalid {
            name: AZURE_ENVIRONMENT,
            ..
        }
    ));
    assert!(matches!(
        err(&[(AZURE_AUTHORITY_HOST, "http://evil.example/")]),
        EnvVarError::Invalid {
            name: AZURE_AUTHORITY_HOST,
            ..
        }
    ));
    assert!(matches!(
        err(&[
            (AZURE_TENANT_ID, "a/b"),
            (AZURE_CLIENT_ID, "c"),
            (AZURE_CLIENT_SECRET, "s")
        ]),
        EnvVarError::Invalid {
            name: AZURE_TENANT_ID,
            ..
        }
    ));
    let secret_err = err(&[
        (AZURE_TENANT_ID, "a b"),
        (AZURE_CLIENT_ID, "c"),
        (AZURE_CLIENT_SECRET, "TopSecret99"),
    ]);
    assert!(!format!("{secret_err} {secret_err:?}").contains("TopSecret99"));
    let chain = chain_from_env(env(&[
        (AZURE_TENANT_ID, "t"),
        (AZURE_CLIENT_ID, "c"),
        (AZURE_CLIENT_SECRET, "TopSecret99"),
        (IDENTITY_ENDPOINT, "http://x"),
        (IDENTITY_HEADER, "HeaderSecret77"),
    ]))
    .unwrap();
    let shown = format!("{chain:?}");
    assert!(
        !shown.contains("TopSecret99") && !shown.contains("HeaderSecret77"),
        "{shown}"
    );
}
