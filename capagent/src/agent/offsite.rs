//! Backups kept off the node: with an S3 bucket configured, a finished archive is uploaded and
//! its local copy deleted; downloads stream the object, restores fetch it to a temporary file
//! first (its checksum is verified before anything changes), deletes and retention delete it.
//! Built without the `s3` feature, [`Offsite`] has no values.

use capcore::protocol::v1::streams::Outgoing;
use capcore::{Error, Result};
use std::path::Path;

#[cfg(feature = "s3")]
pub(crate) use crate::s3::Bucket as Offsite;

/// No offsite storage in this build.
#[cfg(not(feature = "s3"))]
#[derive(Clone, Debug)]
pub(crate) enum Offsite {}

/// The storage `config` names, checked; the error says why it cannot be used.
pub(crate) fn open(config: crate::backups::S3Config) -> std::result::Result<Offsite, String> {
    #[cfg(feature = "s3")]
    {
        Offsite::new(config)
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = config;
        Err("this agent was built without the `s3` feature".into())
    }
}

/// The object key of a server's backup, and its recorded location.
pub(crate) fn place(bucket: &Offsite, server: capcore::ids::ServerId, id: capcore::ids::BackupId) -> (String, String) {
    #[cfg(feature = "s3")]
    {
        let key = bucket.key(&format!("{server}/{id}.tar.zst"));
        let url = bucket.url(&key);
        (key, url)
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = (server, id);
        match *bucket {}
    }
}

/// The key of a recorded location in this bucket; `Conflict` naming it otherwise.
pub(crate) fn key_of(bucket: Option<&Offsite>, location: &str) -> Result<(Offsite, String)> {
    let elsewhere =
        || Error::conflict(format!("the backup is kept at {location}, which this node is not configured to reach"));
    let Some(bucket) = bucket else { return Err(elsewhere()) };
    #[cfg(feature = "s3")]
    {
        bucket.key_of(location).map(|key| (bucket.clone(), key)).ok_or_else(elsewhere)
    }
    #[cfg(not(feature = "s3"))]
    {
        match *bucket {}
    }
}

pub(crate) async fn upload(bucket: &Offsite, key: &str, path: &Path) -> Result<()> {
    #[cfg(feature = "s3")]
    {
        bucket.put_file(key, path).await
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = (key, path);
        match *bucket {}
    }
}

pub(crate) async fn fetch(bucket: &Offsite, key: &str, path: &Path) -> Result<u64> {
    #[cfg(feature = "s3")]
    {
        bucket.get_to_file(key, path).await
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = (key, path);
        match *bucket {}
    }
}

pub(crate) async fn delete(bucket: &Offsite, key: &str) -> Result<()> {
    #[cfg(feature = "s3")]
    {
        bucket.delete(key).await
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = key;
        match *bucket {}
    }
}

/// Starts sending the object on `out` (in the background); returns its length.
pub(crate) async fn stream(bucket: &Offsite, key: &str, mut out: Outgoing) -> Result<u64> {
    #[cfg(feature = "s3")]
    {
        let (len, mut body) = match bucket.get(key).await {
            Ok(got) => got,
            Err(e) => {
                out.reset("the backup could not be fetched from S3").await;
                return Err(e);
            }
        };
        tokio::spawn(async move {
            let mut sent = 0u64;
            while let Some(data) = body.next().await {
                let data = match data {
                    Ok(data) => data,
                    Err(e) => {
                        out.reset(&e.to_string()).await;
                        return;
                    }
                };
                match tokio::time::timeout(super::files::STALL, out.send(&data)).await {
                    Ok(Ok(())) => sent += data.len() as u64,
                    Ok(Err(_)) => return,
                    Err(_) => {
                        out.reset("the download stalled").await;
                        return;
                    }
                }
            }
            if sent == len {
                let _ = out.finish().await;
            } else {
                out.reset(&format!("S3 sent {sent} of {len} bytes")).await;
            }
        });
        Ok(len)
    }
    #[cfg(not(feature = "s3"))]
    {
        let _ = (key, &mut out);
        match *bucket {}
    }
}
