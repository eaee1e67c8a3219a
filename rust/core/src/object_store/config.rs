//! From a URL and options to an object_store client: which service, which bucket, which prefix,
//! and the credentials, retries and timeouts it is built with.
use crate::error::{Error, Result};
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientConfigKey, ObjectStore, ObjectStoreScheme, RetryConfig};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use url::Url;

const MIB: usize = 1024 * 1024;
/// Parts of a multipart upload (the last one may be smaller).
pub const DEFAULT_PART_SIZE: usize = 8 * MIB;
/// S3's smallest part (all but the last); GCS and Azure accept it too.
pub const MIN_PART_SIZE: usize = 5 * MIB;
/// S3's largest part.
pub const MAX_PART_SIZE: usize = 5 * 1024 * MIB;
pub const DEFAULT_PARTS_IN_FLIGHT: usize = 4;
/// Uploads to a cloud store (or an HTTPS endpoint) above this many bytes are multipart uploads:
/// over a real network one connection carries a fraction of what several do, and a request must
/// end within [`StoreOptions::timeout`] (64 MiB at 10 MB/s is 7 s of the 60).
pub const DEFAULT_MULTIPART_THRESHOLD: usize = 64 * MIB;
/// Uploads to a plain-HTTP endpoint (a local or LAN server) above this many bytes are multipart
/// uploads: such a link carries one request at its full speed, and servers that join the parts
/// by copying them when the upload completes (moto, s3s-fs) write every byte twice.
pub const PLAIN_HTTP_MULTIPART_THRESHOLD: usize = 1024 * MIB;

/// How a store handle is built; `Default` gives the documented defaults and no `config`.
#[derive(Clone)]
pub struct StoreOptions {
    /// object_store configuration keys and their values, for example `("aws_access_key_id", ..)`,
    /// `("aws_secret_access_key", ..)`, `("aws_session_token", ..)`, `("aws_region", ..)`,
    /// `("aws_endpoint", "http://127.0.0.1:9000")`, `("allow_http", "true")`; keys are
    /// case-insensitive. Keys not given here are read from the environment (`AWS_*`, `GOOGLE_*`,
    /// `AZURE_*`), as the object_store builders' `from_env` do.
    pub config: Vec<(String, String)>,
    pub retry: RetryOptions,
    /// Limit on a whole request, response included. A part upload must finish within it.
    pub timeout: Duration,
    /// Limit on opening a connection.
    pub connect_timeout: Duration,
    pub upload: UploadOptions,
    /// Ranged GETs of one object read at once; `None`: 4, or 1 (one plain GET) for an
    /// `http://` endpoint, a local or LAN server that gains nothing from more connections
    /// (and some, such as moto, serve every range by copying the whole object).
    pub reads_in_flight: Option<usize>,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            config: Vec::new(),
            retry: RetryOptions::default(),
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            upload: UploadOptions::default(),
            reads_in_flight: None,
        }
    }
}

/// Values are credentials: only the keys are shown.
impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: Vec<&str> = self.config.iter().map(|(key, _)| key.as_str()).collect();
        f.debug_struct("StoreOptions")
            .field("config_keys", &keys)
            .field("retry", &self.retry)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("upload", &self.upload)
            .field("reads_in_flight", &self.reads_in_flight)
            .finish()
    }
}

/// Failed requests (connection errors, timeouts of idempotent requests, 5xx and 429 answers) are
/// retried with exponential backoff and jitter until `max_retries` retries or `retry_timeout`
/// since the first attempt, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryOptions {
    pub max_retries: usize,
    pub init_backoff: Duration,
    pub max_backoff: Duration,
    pub retry_timeout: Duration,
}

impl Default for RetryOptions {
    fn default() -> Self {
        RetryOptions {
            max_retries: 3,
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            retry_timeout: Duration::from_secs(30),
        }
    }
}

/// Blobs and puts larger than the multipart threshold go as multipart uploads of `part_size`
/// parts, at most `max_parts_in_flight` of them uploading at once; smaller ones as one PUT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    pub part_size: usize,
    pub max_parts_in_flight: usize,
    /// Uploads up to this many bytes are one PUT. `None`: the store's default,
    /// [`DEFAULT_MULTIPART_THRESHOLD`], or [`PLAIN_HTTP_MULTIPART_THRESHOLD`] for an `http://`
    /// endpoint (see [`UploadOptions::with_default_threshold`]).
    pub multipart_threshold: Option<usize>,
}

impl UploadOptions {
    /// The largest upload sent as one PUT (`part_size` while no threshold is set).
    pub fn single_put_limit(&self) -> usize {
        self.multipart_threshold.unwrap_or(self.part_size)
    }

    /// These options with the default threshold of a store whose endpoint is, or is not, plain
    /// HTTP, unless one was set; never below `part_size`, so that a multipart upload always
    /// has more than one part.
    pub fn with_default_threshold(self, plain_http: bool) -> UploadOptions {
        let default = if plain_http {
            PLAIN_HTTP_MULTIPART_THRESHOLD
        } else {
            DEFAULT_MULTIPART_THRESHOLD
        };
        UploadOptions {
            multipart_threshold: Some(
                self.multipart_threshold
                    .unwrap_or_else(|| default.max(self.part_size).min(MAX_PART_SIZE)),
            ),
            ..self
        }
    }
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            part_size: DEFAULT_PART_SIZE,
            max_parts_in_flight: DEFAULT_PARTS_IN_FLIGHT,
            multipart_threshold: None,
        }
    }
}

/// The service behind a store URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    S3,
    Gcs,
    Azure,
    Memory,
}

impl StoreKind {
    fn name(self) -> &'static str {
        match self {
            StoreKind::S3 => "S3",
            StoreKind::Gcs => "Google Cloud Storage",
            StoreKind::Azure => "Azure Blob Storage",
            StoreKind::Memory => "in-memory",
        }
    }
}

/// What error messages say about a store.
#[derive(Debug, Clone)]
pub(super) struct Target {
    pub kind: StoreKind,
    /// The URL as given.
    pub url: String,
    /// The bucket (S3, GCS) or container (Azure).
    pub bucket: String,
    /// An endpoint other than the service's own (an S3-compatible server, an emulator).
    pub endpoint: Option<String>,
}

impl Target {
    /// `s3://bucket/prefix/key`.
    pub fn object(&self, key: &str) -> String {
        match self.url.ends_with('/') {
            true => format!("{}{key}", self.url),
            false => format!("{}/{key}", self.url),
        }
    }

    /// "S3 bucket \"results\"" (at endpoint ...).
    pub fn bucket_description(&self) -> String {
        let container = match self.kind {
            StoreKind::Azure => "container",
            _ => "bucket",
        };
        match &self.endpoint {
            Some(endpoint) => format!(
                "{} {container} {:?} at {endpoint}",
                self.kind.name(),
                self.bucket
            ),
            None => format!("{} {container} {:?}", self.kind.name(), self.bucket),
        }
    }
}

/// A client for a store URL, the prefix its keys live under, and what messages say about it.
pub(super) struct Built {
    pub client: Arc<dyn ObjectStore>,
    pub prefix: Path,
    pub target: Target,
}

pub(super) fn build(url: &str, options: &StoreOptions) -> Result<Built> {
    let parsed = Url::parse(url).map_err(|e| bad_url(url, &e.to_string()))?;
    let kind = store_kind(&parsed).ok_or_else(|| bad_url(url, "the scheme is not supported"))?;
    check_options(options, kind)?;
    let prefix = key_prefix(&parsed).map_err(|e| bad_url(url, &e.to_string()))?;
    let mut target = Target {
        kind,
        url: url.to_owned(),
        bucket: parsed.host_str().unwrap_or_default().to_owned(),
        endpoint: None,
    };
    let client: Arc<dyn ObjectStore> = match kind {
        StoreKind::Memory => memory_store(&parsed, options)?,
        StoreKind::S3 => {
            let builder = configure::<AmazonS3Builder>(url, options)?;
            let builder = allow_http_for_http_endpoint(builder, options);
            let builder = unsigned_payload_over_https(builder, options);
            target.endpoint = builder.get_config_value(&AmazonS3ConfigKey::Endpoint);
            Arc::new(builder.build().map_err(|e| build_failed(&target, e))?)
        }
        StoreKind::Gcs => {
            let builder = configure::<GoogleCloudStorageBuilder>(url, options)?;
            Arc::new(builder.build().map_err(|e| build_failed(&target, e))?)
        }
        StoreKind::Azure => {
            let builder = configure::<MicrosoftAzureBuilder>(url, options)?;
            target.endpoint = builder.get_config_value(&AzureConfigKey::Endpoint);
            Arc::new(builder.build().map_err(|e| build_failed(&target, e))?)
        }
    };
    Ok(Built {
        client,
        prefix,
        target,
    })
}

/// Parts below S3's minimum are refused for every cloud store (the failure would otherwise come
/// only when the upload completes); an in-memory store takes any size, so tests can use small ones.
fn check_options(options: &StoreOptions, kind: StoreKind) -> Result<()> {
    let UploadOptions {
        part_size,
        max_parts_in_flight,
        multipart_threshold,
    } = options.upload;
    if multipart_threshold.is_some_and(|threshold| threshold > MAX_PART_SIZE) {
        return Err(Error::InvalidArgument(format!(
            "a multipart threshold above {MAX_PART_SIZE} bytes (5 GiB, the largest single PUT) \
             cannot be used"
        )));
    }
    let min_part_size = if kind == StoreKind::Memory {
        1
    } else {
        MIN_PART_SIZE
    };
    if !(min_part_size..=MAX_PART_SIZE).contains(&part_size) {
        return Err(Error::InvalidArgument(format!(
            "a part size of {part_size} bytes is out of range for {} stores; use {min_part_size} to \
             {MAX_PART_SIZE} bytes (5 MiB to 5 GiB for cloud stores)",
            kind.name()
        )));
    }
    if max_parts_in_flight == 0 {
        return Err(Error::InvalidArgument(
            "max_parts_in_flight must be at least 1".into(),
        ));
    }
    if options.timeout.is_zero() || options.connect_timeout.is_zero() {
        return Err(Error::InvalidArgument(
            "timeout and connect_timeout must be longer than zero".into(),
        ));
    }
    Ok(())
}

fn store_kind(url: &Url) -> Option<StoreKind> {
    let has_host = url.host_str().is_some_and(|host| !host.is_empty());
    match url.scheme() {
        "memory" => Some(StoreKind::Memory),
        "s3" | "s3a" if has_host => Some(StoreKind::S3),
        "gs" if has_host => Some(StoreKind::Gcs),
        "az" | "abfs" | "abfss" | "adl" | "azure" if has_host => Some(StoreKind::Azure),
        "https" => match ObjectStoreScheme::parse(url).ok()?.0 {
            ObjectStoreScheme::AmazonS3 => Some(StoreKind::S3),
            ObjectStoreScheme::MicrosoftAzure => Some(StoreKind::Azure),
            _ => None,
        },
        _ => None,
    }
}

/// The folder of the bucket that keys are relative to: the URL's path. (object_store's own
/// parsing of `az://` URLs takes the first folder for a container name, which its Azure builder
/// does not, so only `https` URLs, whose bucket may be in the path, go through it.)
fn key_prefix(url: &Url) -> std::result::Result<Path, object_store::Error> {
    if url.scheme() == "https" {
        return Ok(ObjectStoreScheme::parse(url)?.1);
    }
    Ok(Path::from_url_path(url.path())?)
}

fn bad_url(url: &str, why: &str) -> Error {
    Error::InvalidArgument(format!(
        "{url:?} is not an object store URL ({why}); use s3://bucket/prefix, gs://bucket/prefix, \
         az://container/prefix or memory://"
    ))
}

fn build_failed(target: &Target, error: object_store::Error) -> Error {
    Error::InvalidArgument(format!(
        "cannot use {} as an object store: {error}",
        target.url
    ))
}

/// `memory://` is a new, empty store; `memory://name` is the process's store of that name,
/// shared by every handle opened on it (tests open several handles on one store).
fn memory_store(url: &Url, options: &StoreOptions) -> Result<Arc<dyn ObjectStore>> {
    if let Some((key, _)) = options.config.first() {
        return Err(Error::InvalidArgument(format!(
            "an in-memory store takes no configuration, but {key:?} was given"
        )));
    }
    static NAMED: Mutex<Option<HashMap<String, Arc<InMemory>>>> = Mutex::new(None);
    let store = match url.host_str().filter(|name| !name.is_empty()) {
        None => Arc::new(InMemory::new()),
        Some(name) => NAMED
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert_with(HashMap::new)
            .entry(name.to_owned())
            .or_insert_with(|| Arc::new(InMemory::new()))
            .clone(),
    };
    Ok(store)
}

/// The object_store builders of the cloud services, seen alike.
trait CloudBuilder: Sized {
    type Key: FromStr<Err = object_store::Error>;
    const KIND: StoreKind;
    /// Option keys to name when an unknown one is given.
    const EXAMPLE_KEYS: &'static str;
    fn from_env_with_url(url: &str) -> Self;
    fn client_key(key: ClientConfigKey) -> Self::Key;
    fn set(self, key: Self::Key, value: &str) -> Self;
    fn with_retry_config(self, retry: RetryConfig) -> Self;
}

impl CloudBuilder for AmazonS3Builder {
    type Key = AmazonS3ConfigKey;
    const KIND: StoreKind = StoreKind::S3;
    const EXAMPLE_KEYS: &'static str = "aws_access_key_id, aws_secret_access_key, \
        aws_session_token, aws_region, aws_endpoint, allow_http";
    fn from_env_with_url(url: &str) -> Self {
        AmazonS3Builder::from_env().with_url(url)
    }
    fn client_key(key: ClientConfigKey) -> Self::Key {
        AmazonS3ConfigKey::Client(key)
    }
    fn set(self, key: Self::Key, value: &str) -> Self {
        self.with_config(key, value)
    }
    fn with_retry_config(self, retry: RetryConfig) -> Self {
        self.with_retry(retry)
    }
}

impl CloudBuilder for GoogleCloudStorageBuilder {
    type Key = GoogleConfigKey;
    const KIND: StoreKind = StoreKind::Gcs;
    const EXAMPLE_KEYS: &'static str =
        "google_service_account, google_service_account_key, google_application_credentials";
    fn from_env_with_url(url: &str) -> Self {
        GoogleCloudStorageBuilder::from_env().with_url(url)
    }
    fn client_key(key: ClientConfigKey) -> Self::Key {
        GoogleConfigKey::Client(key)
    }
    fn set(self, key: Self::Key, value: &str) -> Self {
        self.with_config(key, value)
    }
    fn with_retry_config(self, retry: RetryConfig) -> Self {
        self.with_retry(retry)
    }
}

impl CloudBuilder for MicrosoftAzureBuilder {
    type Key = AzureConfigKey;
    const KIND: StoreKind = StoreKind::Azure;
    const EXAMPLE_KEYS: &'static str = "azure_storage_account_name, azure_storage_account_key, \
        azure_storage_sas_key, azure_storage_use_emulator";
    fn from_env_with_url(url: &str) -> Self {
        MicrosoftAzureBuilder::from_env().with_url(url)
    }
    fn client_key(key: ClientConfigKey) -> Self::Key {
        AzureConfigKey::Client(key)
    }
    fn set(self, key: Self::Key, value: &str) -> Self {
        self.with_config(key, value)
    }
    fn with_retry_config(self, retry: RetryConfig) -> Self {
        self.with_retry(retry)
    }
}

/// The environment first, then the timeouts and retries of `options`, then its `config`, which
/// may override the timeouts with the `timeout` and `connect_timeout` keys.
fn configure<B: CloudBuilder>(url: &str, options: &StoreOptions) -> Result<B> {
    let mut builder = B::from_env_with_url(url)
        .set(
            B::client_key(ClientConfigKey::Timeout),
            &as_millis(options.timeout),
        )
        .set(
            B::client_key(ClientConfigKey::ConnectTimeout),
            &as_millis(options.connect_timeout),
        );
    for (key, value) in &options.config {
        let parsed = key.to_ascii_lowercase().parse::<B::Key>().map_err(|_| {
            Error::InvalidArgument(format!(
                "unknown {} store option {key:?}; options are object_store's configuration keys, \
                 such as {}",
                B::KIND.name(),
                B::EXAMPLE_KEYS
            ))
        })?;
        builder = builder.set(parsed, value);
    }
    Ok(builder.with_retry_config(retry_config(&options.retry)))
}

fn retry_config(retry: &RetryOptions) -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: retry.init_backoff,
            max_backoff: retry.max_backoff.max(retry.init_backoff),
            base: 2.0,
        },
        max_retries: retry.max_retries,
        retry_timeout: retry.retry_timeout,
    }
}

/// object_store reads durations in humantime's notation.
fn as_millis(duration: Duration) -> String {
    format!("{}ms", duration.as_millis().max(1))
}

/// Over HTTPS the payload is not hashed into the request's signature (`UNSIGNED-PAYLOAD`), as the
/// AWS SDKs do for uploads: TLS already protects it in transit, blobs carry their own checksums,
/// and hashing every byte with SHA-256 costs more than sending it on a fast link. Over plain
/// HTTP the signature covers the payload, unless `aws_unsigned_payload` says otherwise.
fn unsigned_payload_over_https(
    builder: AmazonS3Builder,
    options: &StoreOptions,
) -> AmazonS3Builder {
    let said_explicitly = set_explicitly(
        options,
        &["aws_unsigned_payload", "unsigned_payload"],
        "AWS_UNSIGNED_PAYLOAD",
    );
    let over_https = builder
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .is_none_or(|endpoint| endpoint.starts_with("https://"));
    if over_https && !said_explicitly {
        builder.with_config(AmazonS3ConfigKey::UnsignedPayload, "true")
    } else {
        builder
    }
}

/// Whether the user chose a setting themselves: one of `keys` (any case) in the store's
/// configuration, or the environment variable `env`. Defaults ferroflow picks never override it.
fn set_explicitly(options: &StoreOptions, keys: &[&str], env: &str) -> bool {
    options
        .config
        .iter()
        .any(|(key, _)| keys.contains(&key.to_ascii_lowercase().as_str()))
        || std::env::var_os(env).is_some()
}

/// An endpoint given as `http://` (a local S3-compatible server) is consent to plain HTTP:
/// object_store would otherwise refuse it until `allow_http` is set as well.
fn allow_http_for_http_endpoint(
    builder: AmazonS3Builder,
    options: &StoreOptions,
) -> AmazonS3Builder {
    let said_explicitly =
        set_explicitly(options, &["allow_http", "aws_allow_http"], "AWS_ALLOW_HTTP");
    let http_endpoint = builder
        .get_config_value(&AmazonS3ConfigKey::Endpoint)
        .is_some_and(|endpoint| endpoint.starts_with("http://"));
    if http_endpoint && !said_explicitly {
        builder.with_config(
            AmazonS3ConfigKey::Client(ClientConfigKey::AllowHttp),
            "true",
        )
    } else {
        builder
    }
}
