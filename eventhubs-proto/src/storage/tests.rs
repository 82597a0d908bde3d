//! Unit tests: the Shared Key vectors, URLs, connection strings, XML.

use super::*;
use crate::http::date::parse_http_date;

fn azurite() -> (BlobService, SharedKeyCredential) {
    let endpoint = BlobEndpoint::parse("http://127.0.0.1:10000/devstoreaccount1").unwrap();
    let key = SharedKeyCredential::new(DEVELOPMENT_ACCOUNT, DEVELOPMENT_KEY).unwrap();
    (BlobService::new(endpoint), key)
}

fn vector_time() -> i64 {
    parse_http_date("Tue, 01 Dec 2026 10:00:00 GMT").unwrap()
}

fn signed(mut request: http::Request<bytes::Bytes>, key: &SharedKeyCredential) -> (String, String) {
    authorize(&mut request, Authorization::SharedKey(key), vector_time()).unwrap();
    let auth = request.headers()["authorization"]
        .to_str()
        .unwrap()
        .to_owned();
    (string_to_sign(&request, key.account()), auth)
}

/// The three Shared Key vectors: List Blobs, Put Blob with
/// `If-None-Match: *`, Set Blob Metadata with `If-Match`, on Azurite's
/// path-style URLs (the account twice in the canonicalized resource).
#[test]
fn shared_key_vectors() {
    let (svc, key) = azurite();
    let prefix = "127.0.0.1:5672/eh1/$default/ownership/";
    let list = svc
        .list_blobs("checkpoints", &ListBlobs::with_metadata(prefix))
        .unwrap();
    assert_eq!(
        list.uri().to_string(),
        "http://127.0.0.1:10000/devstoreaccount1/checkpoints?restype=container&comp=list&prefix=127.0.0.1%3A5672%2Feh1%2F%24default%2Fownership%2F&include=metadata"
    );
    let (sts, auth) = signed(list, &key);
    assert_eq!(
        sts,
        "GET\n\n\n\n\n\n\n\n\n\n\n\nx-ms-date:Tue, 01 Dec 2026 10:00:00 GMT\nx-ms-version:2021-12-02\n/devstoreaccount1/devstoreaccount1/checkpoints\ncomp:list\ninclude:metadata\nprefix:127.0.0.1:5672/eh1/$default/ownership/\nrestype:container"
    );
    assert_eq!(
        auth,
        "SharedKey devstoreaccount1:yo6FxiS53ikPBX93ER6tSyyyxeDIxB3ifW/J81BWE9g="
    );

    let blob = "127.0.0.1:5672/eh1/$default/ownership/0";
    let put = svc
        .put_empty_blob(
            "checkpoints",
            blob,
            &[("ownerid", "owner-a")],
            &Condition::IfNoneMatchAny,
        )
        .unwrap();
    assert_eq!(
        put.uri().path(),
        "/devstoreaccount1/checkpoints/127.0.0.1%3A5672/eh1/%24default/ownership/0"
    );
    let (sts, auth) = signed(put, &key);
    assert_eq!(
        sts,
        "PUT\n\n\n\n\n\n\n\n\n*\n\n\nx-ms-blob-type:BlockBlob\nx-ms-date:Tue, 01 Dec 2026 10:00:00 GMT\nx-ms-meta-ownerid:owner-a\nx-ms-version:2021-12-02\n/devstoreaccount1/devstoreaccount1/checkpoints/127.0.0.1%3A5672/eh1/%24default/ownership/0"
    );
    assert_eq!(
        auth,
        "SharedKey devstoreaccount1:RTyiPq7y1gLv8PrHxEwnz1GPeatzk+L77Y8clagSbUQ="
    );

    // The listed ETag is bare; If-Match sends it quoted, and signs it so.
    let set = svc
        .set_metadata(
            "checkpoints",
            blob,
            &[("ownerid", "owner-a")],
            &Condition::IfMatch("0x1D3E736350A41A0".into()),
        )
        .unwrap();
    assert_eq!(set.headers()["if-match"], "\"0x1D3E736350A41A0\"");
    let (sts, auth) = signed(set, &key);
    assert_eq!(
        sts,
        "PUT\n\n\n\n\n\n\n\n\"0x1D3E736350A41A0\"\n\n\n\nx-ms-date:Tue, 01 Dec 2026 10:00:00 GMT\nx-ms-meta-ownerid:owner-a\nx-ms-version:2021-12-02\n/devstoreaccount1/devstoreaccount1/checkpoints/127.0.0.1%3A5672/eh1/%24default/ownership/0\ncomp:metadata"
    );
    assert_eq!(
        auth,
        "SharedKey devstoreaccount1:2cxmOm2TnDQSYz0WOzvxH+x29OGcapz+ggjuI99rn2E="
    );
}

#[test]
fn canonicalization_details() {
    let (svc, key) = azurite();
    // A quoted ETag is not quoted twice; Content-Length 0 signs as empty
    // (the writer adds it later); repeated and upper-case query names.
    let set = svc
        .set_metadata(
            "c00",
            "b",
            &[("k", "v")],
            &Condition::IfMatch("\"0x1\"".into()),
        )
        .unwrap();
    assert_eq!(set.headers()["if-match"], "\"0x1\"");
    let mut r =
        http::Request::get("http://127.0.0.1:10000/devstoreaccount1/c00?Comp=list&b=2&b=1&a=x%2Fy")
            .header("x-ms-version", "2021-12-02")
            .header("content-length", "0")
            .header("X-MS-Meta-Z", "  padded  ")
            .body(bytes::Bytes::new())
            .unwrap();
    authorize(&mut r, Authorization::Anonymous, 0).unwrap();
    let sts = string_to_sign(&r, key.account());
    assert!(sts.starts_with("GET\n\n\n\n"), "{sts:?}");
    assert!(sts.contains("x-ms-meta-z:padded\nx-ms-version"), "{sts:?}");
    assert!(
        sts.ends_with("/devstoreaccount1/devstoreaccount1/c00\na:x/y\nb:1,2\ncomp:list"),
        "{sts:?}"
    );
}

#[test]
fn virtual_host_and_path_style_urls() {
    let svc =
        BlobService::new(BlobEndpoint::for_service("https", "acct", "core.windows.net").unwrap());
    let r = svc
        .get_properties(
            "checkpoints",
            "ns.servicebus.windows.net/eh/$default/checkpoint/0",
        )
        .unwrap();
    assert_eq!(
        r.uri().to_string(),
        "https://acct.blob.core.windows.net/checkpoints/ns.servicebus.windows.net/eh/%24default/checkpoint/0"
    );
    assert_eq!(r.method(), http::Method::HEAD);
    let e = BlobEndpoint::for_account("http://127.0.0.1:10000", "devstoreaccount1").unwrap();
    assert!(e.is_path_style());
    assert_eq!(e.to_string(), "http://127.0.0.1:10000/devstoreaccount1");
    let e = BlobEndpoint::for_account("http://localhost:10000/", "dev").unwrap();
    assert_eq!(e.to_string(), "http://localhost:10000/dev");
    let e = BlobEndpoint::for_account("https://acct.blob.core.windows.net/", "acct").unwrap();
    assert!(!e.is_path_style());
    let e = BlobEndpoint::parse("http://[::1]:10000/devstoreaccount1").unwrap();
    assert_eq!(e.host(), "::1");
    assert_eq!(
        BlobEndpoint::parse("https://a.blob.core.windows.net")
            .unwrap()
            .host(),
        "a.blob.core.windows.net"
    );
    for bad in [
        "ftp://h/",
        "h:1",
        "https://",
        "http://u@h/",
        "https://h/?sv=1",
    ] {
        assert!(BlobEndpoint::parse(bad).is_err(), "{bad}");
    }
    let create = svc.create_container("checkpoints").unwrap();
    assert_eq!(create.uri().query(), Some("restype=container"));
    assert_eq!(create.method(), http::Method::PUT);
    let page2 = svc
        .list_blobs(
            "c00",
            &ListBlobs::with_metadata("p/")
                .at(Some("2!8!x/y".into()))
                .max_results(2),
        )
        .unwrap();
    assert_eq!(
        page2.uri().query(),
        Some("restype=container&comp=list&prefix=p%2F&include=metadata&marker=2%218%21x%2Fy&maxresults=2")
    );
}

#[test]
fn names_and_metadata_are_checked() {
    let (svc, _) = azurite();
    for bad in ["ab", "Upper", "a--b", "-ab", "ab-", "a_b", &"a".repeat(64)] {
        assert!(
            matches!(
                check_container_name(bad),
                Err(StorageError::InvalidContainerName { .. })
            ),
            "{bad}"
        );
    }
    assert!(check_container_name("checkpoints-1").is_ok());
    assert!(svc
        .put_empty_blob("c00", "", &[], &Condition::None)
        .is_err());
    assert!(svc
        .put_empty_blob("c00", &"x".repeat(1025), &[], &Condition::None)
        .is_err());
    for (k, v) in [
        ("", "v"),
        ("1a", "v"),
        ("a-b", "v"),
        ("k", "line\nbreak"),
        ("k", "é"),
    ] {
        assert!(
            matches!(
                svc.set_metadata("c00", "b", &[(k, v)], &Condition::None),
                Err(StorageError::InvalidMetadata { .. })
            ),
            "{k:?}={v:?}"
        );
    }
    // Empty values are allowed: a relinquished ownership.
    let r = svc
        .set_metadata("c00", "b", &[("ownerid", "")], &Condition::None)
        .unwrap();
    assert_eq!(r.headers()["x-ms-meta-ownerid"], "");
}

#[test]
fn sas_and_bearer_authorization() {
    let (svc, key) = azurite();
    let sas = SasToken::parse(
        "?sv=2021-12-02&ss=b&srt=sco&sp=rwlac&se=2030-01-01T00%3A00%3A00Z&sig=abc%2Bdef%3D",
    )
    .unwrap();
    let mut r = svc
        .list_blobs("c00", &ListBlobs::with_metadata("p"))
        .unwrap();
    authorize(&mut r, Authorization::Sas(&sas), 0).unwrap();
    assert!(r.uri().query().unwrap().ends_with("&include=metadata&sv=2021-12-02&ss=b&srt=sco&sp=rwlac&se=2030-01-01T00%3A00%3A00Z&sig=abc%2Bdef%3D"));
    assert!(!r.headers().contains_key("authorization"));
    let mut r = svc.get_properties("c00", "b").unwrap();
    authorize(&mut r, Authorization::Sas(&sas), 0).unwrap();
    assert!(r.uri().query().unwrap().starts_with("sv="));
    let debug = format!("{sas:?}");
    assert!(
        debug.contains("sig=<redacted>") && !debug.contains("abc"),
        "{debug}"
    );
    for bad in ["", "?", "sv=1&se=2", "sig=a b", "sig=%zz"] {
        assert!(SasToken::parse(bad).is_err(), "{bad:?}");
    }

    let mut r = svc.get_properties("c00", "b").unwrap();
    authorize(&mut r, Authorization::Bearer("eyJ0.x.y"), 0).unwrap();
    assert_eq!(r.headers()["authorization"], "Bearer eyJ0.x.y");
    assert_eq!(r.headers()["x-ms-date"], "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(r.headers()["x-ms-version"], "2021-12-02");
    assert!(authorize(&mut r, Authorization::Bearer("bad\ntoken"), 0).is_err());

    // Generated SAS tokens: the fields, and the signature over the
    // string-to-sign of the account and service SAS REST pages.
    let account = key.account_sas(&AccountSas::new("rwlac", 1_900_000_000));
    let q = account.as_query();
    assert!(
        q.starts_with("sv=2021-12-02&ss=b&srt=sco&sp=rwlac&se=2030-03-17T17%3A46%3A40Z&sig="),
        "{q}"
    );
    let expected =
        key.sign("devstoreaccount1\nrwlac\nb\nsco\n\n2030-03-17T17:46:40Z\n\n\n2021-12-02\n\n");
    assert!(q.ends_with(&percent_encode_query(&expected)));
    let container = key.container_sas("c00", &ContainerSas::new("racwl", 1_900_000_000));
    let expected = key.sign("racwl\n\n2030-03-17T17:46:40Z\n/blob/devstoreaccount1/c00\n\n\n\n2021-12-02\nc\n\n\n\n\n\n\n");
    assert!(container
        .as_query()
        .ends_with(&percent_encode_query(&expected)));
    assert!(SasToken::parse(container.as_query()).is_ok());
}

#[test]
fn connection_strings() {
    let dev = StorageConnectionString::parse("UseDevelopmentStorage=true").unwrap();
    assert_eq!(dev.blob_endpoint.to_string(), DEVELOPMENT_BLOB_ENDPOINT);
    assert_eq!(dev.account_name.as_deref(), Some(DEVELOPMENT_ACCOUNT));
    assert!(matches!(dev.credentials, StorageCredentials::SharedKey(_)));
    let debug = format!("{dev:?}");
    assert!(
        !debug.contains("Eby8") && debug.contains("<redacted>"),
        "{debug}"
    );

    let azurite = format!("DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={DEVELOPMENT_KEY};BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;");
    let cs: StorageConnectionString = azurite.parse().unwrap();
    assert_eq!(cs, dev);

    let svc = StorageConnectionString::parse("defaultendpointsprotocol=https;accountname=acct;accountkey=a2V5;endpointsuffix=core.chinacloudapi.cn").unwrap();
    assert_eq!(
        svc.blob_endpoint.to_string(),
        "https://acct.blob.core.chinacloudapi.cn"
    );
    let sas = StorageConnectionString::parse("BlobEndpoint=https://acct.blob.core.windows.net/;SharedAccessSignature=sv=2021-12-02&ss=b&sig=x%3D").unwrap();
    assert!(matches!(sas.credentials, StorageCredentials::Sas(_)));
    assert_eq!(sas.account_name, None);
    let none = StorageConnectionString::parse("AccountName=acct").unwrap();
    assert_eq!(none.credentials, StorageCredentials::None);
    assert_eq!(
        none.blob_endpoint.to_string(),
        "https://acct.blob.core.windows.net"
    );

    use StorageConnectionStringError as E;
    for (s, expect) in [
        ("", E::Empty),
        (" ; ;", E::Empty),
        ("AccountName", E::MalformedPart { index: 0 }),
        (
            "AccountName=a;accountname=b",
            E::Duplicate {
                key: "accountname".into(),
            },
        ),
        ("AccountKey=a2V5", E::MissingEndpoint),
        (
            "BlobEndpoint=http://h/a;AccountKey=a2V5",
            E::MissingAccountName,
        ),
        ("AccountName=a;AccountKey=!!notbase64", E::InvalidAccountKey),
        (
            "AccountName=a;AccountKey=a2V5;SharedAccessSignature=sig=x",
            E::ConflictingCredentials,
        ),
        (
            "AccountName=a;DefaultEndpointsProtocol=ftp",
            E::InvalidProtocol {
                value: "ftp".into(),
            },
        ),
    ] {
        assert_eq!(StorageConnectionString::parse(s), Err(expect), "{s:?}");
    }
    assert!(matches!(
        StorageConnectionString::parse("UseDevelopmentStorage=false"),
        Err(E::InvalidDevelopmentStorage { .. })
    ));
    assert!(matches!(
        StorageConnectionString::parse("UseDevelopmentStorage=true;AccountName=x"),
        Err(E::InvalidDevelopmentStorage { .. })
    ));
    assert!(matches!(
        StorageConnectionString::parse("BlobEndpoint=nope;SharedAccessSignature=sig=x"),
        Err(E::Invalid(StorageError::InvalidEndpoint { .. }))
    ));
    assert!(matches!(
        StorageConnectionString::parse("AccountName=a;SharedAccessSignature=sv=1"),
        Err(E::Invalid(StorageError::InvalidSas { .. }))
    ));
    // Errors never repeat a value that may be a secret.
    let e = StorageConnectionString::parse("AccountName=a;AccountKey=s3cr3t!!").unwrap_err();
    assert!(!e.to_string().contains("s3cr3t"));
}

/// A page as Azurite 3.35.0 sends it (BOM, bare ETags, an empty
/// metadata value, a marker), and the service's variants.
#[test]
fn list_blobs_pages() {
    let xml = "\u{feff}<?xml version=\"1.0\" encoding=\"utf-8\"?><EnumerationResults ServiceEndpoint=\"http://127.0.0.1:10000/devstoreaccount1\" ContainerName=\"c00\"><Prefix>127.0.0.1:5672/eh1/$default/ownership/</Prefix><MaxResults>2</MaxResults><Blobs>\
        <Blob><Name>127.0.0.1:5672/eh1/$default/ownership/0</Name><Properties><Creation-Time>Tue, 01 Dec 2026 10:00:00 GMT</Creation-Time><Last-Modified>Tue, 01 Dec 2026 10:00:01 GMT</Last-Modified><Etag>0x1D3E736350A41A0</Etag><Content-Length>0</Content-Length><BlobType>BlockBlob</BlobType></Properties><Metadata><ownerid>owner-a</ownerid></Metadata></Blob>\
        <Blob><Name Encoded=\"true\">a%2Fb%20c</Name><Properties><Etag>\"0x2\"</Etag></Properties><Metadata><ownerid/><Other>&lt;x&amp;y&gt;&#65;<![CDATA[<z>]]></Other></Metadata></Blob>\
        </Blobs><NextMarker>2!64!MDAwMDI5</NextMarker></EnumerationResults>";
    let page = parse_list_blobs(xml.as_bytes()).unwrap();
    assert_eq!(page.blobs.len(), 2);
    let b = &page.blobs[0];
    assert_eq!(b.name, "127.0.0.1:5672/eh1/$default/ownership/0");
    assert_eq!(b.etag.as_deref(), Some("0x1D3E736350A41A0"));
    assert_eq!(
        b.last_modified_unix,
        parse_http_date("Tue, 01 Dec 2026 10:00:01 GMT")
    );
    assert_eq!(b.content_length, Some(0));
    assert_eq!(b.metadata_value("OwnerId"), Some("owner-a"));
    let b = &page.blobs[1];
    assert_eq!(b.name, "a/b c");
    assert_eq!(b.etag.as_deref(), Some("0x2"));
    assert_eq!(b.metadata_value("ownerid"), Some(""));
    assert_eq!(b.metadata_value("other"), Some("<x&y>A<z>"));
    assert_eq!(page.next_marker.as_deref(), Some("2!64!MDAwMDI5"));

    let last = parse_list_blobs(b"<EnumerationResults><Blobs/><NextMarker/></EnumerationResults>")
        .unwrap();
    assert_eq!(last, ListBlobsPage::default());
    for bad in [
        &b""[..],
        b"<Error><Code>x</Code></Error>",
        b"<EnumerationResults><Blobs>",
        b"<EnumerationResults></Wrong>",
        b"<EnumerationResults><Blobs><Blob><Properties><Last-Modified>yesterday</Last-Modified></Properties></Blob></Blobs></EnumerationResults>",
        b"<EnumerationResults>&bogus;</EnumerationResults>",
        b"\xff\xfe",
        b"<EnumerationResults/><EnumerationResults/>",
    ] {
        assert!(parse_list_blobs(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
    }
    let deep = format!("<EnumerationResults>{}", "<a>".repeat(100));
    assert!(parse_list_blobs(deep.as_bytes()).is_err());
}

#[test]
fn service_errors() {
    let body = b"\xEF\xBB\xBF<?xml version=\"1.0\" encoding=\"utf-8\"?><Error><Code>ConditionNotMet</Code><Message>The condition specified using HTTP conditional header(s) is not met.\nRequestId:abc\nTime:2026-12-01T10:00:00.000Z</Message></Error>";
    let mut headers = http::HeaderMap::new();
    headers.insert("x-ms-request-id", "abc".parse().unwrap());
    let e = ServiceError::from_parts(412, &headers, body);
    assert_eq!(e.code, Some(StorageErrorCode::ConditionNotMet));
    assert_eq!(
        e.message.as_deref(),
        Some("The condition specified using HTTP conditional header(s) is not met.")
    );
    assert_eq!(e.request_id.as_deref(), Some("abc"));
    assert!(e.is_condition_lost() && !e.is_retryable());
    assert_eq!(
        e.to_string(),
        "storage service answered 412 ConditionNotMet: The condition specified using HTTP conditional header(s) is not met."
    );
    // HEAD: no body, the header says it.
    headers.insert("x-ms-error-code", "BlobNotFound".parse().unwrap());
    let e = ServiceError::from_parts(404, &headers, b"");
    assert!(e.is(&StorageErrorCode::BlobNotFound) && e.is_not_found());
    // Something that is not the service's XML.
    let e = ServiceError::from_parts(503, &http::HeaderMap::new(), b"<html>busy</html>");
    assert_eq!((&e.code, &e.message), (&None, &None));
    assert!(e.is_retryable());
    let e = ServiceError::from_parts(
        409,
        &http::HeaderMap::new(),
        b"<Error><Code>BlobAlreadyExists</Code></Error>",
    );
    assert!(e.is_condition_lost());
    let e = ServiceError::from_parts(
        409,
        &http::HeaderMap::new(),
        b"<Error><Code>ContainerAlreadyExists</Code></Error>",
    );
    assert!(!e.is_condition_lost());
    assert_eq!(
        StorageErrorCode::parse("Whatever"),
        StorageErrorCode::Other("Whatever".into())
    );
    assert_eq!(
        StorageErrorCode::parse("AuthenticationFailed").as_str(),
        "AuthenticationFailed"
    );
}

#[test]
fn percent_coding() {
    assert_eq!(
        percent_encode_path("127.0.0.1:5672/eh1/$default/ownership/0"),
        "127.0.0.1%3A5672/eh1/%24default/ownership/0"
    );
    assert_eq!(percent_encode_query("a/b c~"), "a%2Fb%20c~");
    assert_eq!(percent_decode("a%2Fb%20c").as_deref(), Some("a/b c"));
    assert_eq!(percent_decode("%e2%82%ac").as_deref(), Some("€"));
    assert_eq!(percent_decode("%"), None);
    assert_eq!(percent_decode("%g0"), None);
    assert_eq!(percent_decode("%ff"), None);
}
