//! object_store's errors as the core's, each saying what to do about it.
use super::config::Target;
use crate::error::Error;
use object_store::Error as StoreError;
use std::error::Error as StdError;
use std::io;

/// What was being done, for messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Action {
    Read,
    Write,
    Delete,
    List,
    Inspect,
}

impl Action {
    fn verb(self) -> &'static str {
        match self {
            Action::Read => "reading",
            Action::Write => "writing",
            Action::Delete => "deleting",
            Action::List => "listing",
            Action::Inspect => "looking up",
        }
    }
}

/// Error codes in a service's answer that mean the bucket (or container) itself is missing.
const MISSING_BUCKET_CODES: [&str; 3] =
    ["NoSuchBucket", "ContainerNotFound", "bucket does not exist"];
/// Error codes that mean the credentials themselves were refused, not the operation.
const REFUSED_CREDENTIAL_CODES: [&str; 5] = [
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AuthenticationFailed",
];

/// Converts `error`, met while doing `action` on `key` (or on a listing prefix) of `target`.
pub(super) fn convert(error: StoreError, target: &Target, key: &str, action: Action) -> Error {
    let object = target.object(key);
    let verb = action.verb();
    let text = full_text(&error);
    if MISSING_BUCKET_CODES.iter().any(|code| text.contains(code)) {
        return bucket_not_found(target);
    }
    match error {
        // A missing object cannot fail a write: the 404 is about the bucket.
        StoreError::NotFound { .. } if action == Action::Write => bucket_not_found(target),
        StoreError::NotFound { .. } => Error::NotFound(format!("{object} does not exist")),
        StoreError::Unauthenticated { .. } => credentials_refused(target, verb, &object, &text),
        StoreError::PermissionDenied { .. }
            if REFUSED_CREDENTIAL_CODES
                .iter()
                .any(|code| text.contains(code)) =>
        {
            credentials_refused(target, verb, &object, &text)
        }
        StoreError::PermissionDenied { .. } => Error::PermissionDenied(format!(
            "{verb} {object} was denied: {text}; check that the credentials are allowed to do it \
             (the bucket's policy, the role's or account's permissions)"
        )),
        StoreError::InvalidPath { source } => Error::UnsafeKey(format!(
            "storage key {key:?} cannot name an object: {source}"
        )),
        StoreError::NotSupported { .. } | StoreError::NotImplemented => Error::InvalidArgument(
            format!("{verb} {object} needs a feature this store does not offer: {text}"),
        ),
        StoreError::UnknownConfigurationKey { .. } => Error::InvalidArgument(text),
        other => match transport_failure(&other) {
            Some(what) => Error::Unavailable(format!(
                "{verb} {object} failed: {what} the {} ({text}); check the URL, the endpoint \
                 and the network, or raise timeout, connect_timeout or the retries{}",
                target.bucket_description(),
                credentials_hint(&text)
            )),
            None => Error::io(format!("{verb} {object}"), io::Error::other(text)),
        },
    }
}

fn bucket_not_found(target: &Target) -> Error {
    Error::BucketNotFound(format!(
        "the {} does not exist; create it, or correct the storage URL {} (and the endpoint, for \
         an S3-compatible server)",
        target.bucket_description(),
        target.url
    ))
}

fn credentials_refused(target: &Target, verb: &str, object: &str, text: &str) -> Error {
    Error::PermissionDenied(format!(
        "the {} refused the credentials when {verb} {object} ({text}); check the access key, \
         secret and session token (given as options or in the environment, such as \
         AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) and that they have not \
         expired",
        target.bucket_description()
    ))
}

/// Without configured credentials, object_store asks the cloud's metadata service for them, and
/// that is what fails to answer outside the cloud.
fn credentials_hint(text: &str) -> &'static str {
    if text.to_ascii_lowercase().contains("credential") {
        "; if no credentials are configured, set them as options or in the environment \
         (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY for S3)"
    } else {
        ""
    }
}

/// How the request failed on the way, when it never got an answer: "could not connect to",
/// "timed out waiting for", ...
fn transport_failure(error: &StoreError) -> Option<&'static str> {
    let mut source: Option<&(dyn StdError + 'static)> = error.source();
    while let Some(current) = source {
        if let Some(http) = current.downcast_ref::<reqwest::Error>() {
            return Some(if http.is_timeout() {
                "timed out waiting for"
            } else if http.is_connect() {
                "could not connect to"
            } else {
                "lost the connection to"
            });
        }
        if let Some(io) = current.downcast_ref::<io::Error>() {
            match io.kind() {
                io::ErrorKind::TimedOut => return Some("timed out waiting for"),
                io::ErrorKind::ConnectionRefused => return Some("could not connect to"),
                io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted => {
                    return Some("lost the connection to")
                }
                _ => {}
            }
        }
        source = current.source();
    }
    None
}

/// The error and its sources, each once: object_store's messages often repeat their source.
pub(super) fn full_text(error: &StoreError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(current) = source {
        let part = current.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = current.source();
    }
    text
}
