//! `COPY … TO STDOUT` (text format) on a [`ReplicationClient`] session, delivered as
//! [`CopyChunk`]s of complete rows.
//!
//! In COPY OUT, each CopyData message of a text-format COPY holds exactly one row ending in
//! `\n`; rows are accumulated until a chunk reaches [`CHUNK_BYTES`], so a chunk never splits a
//! row and memory stays bounded by the chunk size plus one row.

use bytes::BytesMut;
use postgres_protocol::message::backend::Message;

use super::connection::{Backend, ReplicationClient, abbreviate};
use super::error::Error;
use crate::base::event::CopyChunk;

/// Target size of one chunk.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// An open COPY OUT; read it to its end (`Ok(None)`) before using the session again.
#[derive(Debug)]
pub struct CopyOut<'a> {
    client: &'a mut ReplicationClient,
    sql: String,
    done: bool,
    rows_total: u64,
}

impl ReplicationClient {
    /// Runs `sql` (a `COPY … TO STDOUT` in text format) on this session and returns a reader
    /// of its rows. Errors before the first row (bad SQL, missing table) are returned here.
    pub async fn copy_out(&mut self, sql: &str) -> Result<CopyOut<'_>, Error> {
        self.check_idle()?;
        postgres_protocol::message::frontend::query(sql, &mut self.write_buf)
            .map_err(|e| self.protocol(format!("cannot encode COPY: {e}")))?;
        self.flush().await?;
        let action = format!("COPY `{}`", abbreviate(sql));
        match self.recv().await? {
            Backend::Message(Message::CopyOutResponse(body)) => {
                if body.format() != 0 {
                    self.busy = Some("COPY");
                    return Err(self.protocol(format!(
                        "{action} is in binary format; only text COPY is supported"
                    )));
                }
            }
            Backend::Message(Message::ErrorResponse(body)) => {
                let error = self.server_error(&body, &action);
                self.finish_query(&action).await?;
                return Err(error);
            }
            // `copy_out` of a non-COPY statement: finish it and refuse.
            Backend::Message(Message::RowDescription(_))
            | Backend::Message(Message::CommandComplete(_))
            | Backend::Message(Message::EmptyQueryResponse) => {
                self.finish_query(&action).await?;
                return Err(self.protocol(format!("{action} is not a COPY … TO STDOUT")));
            }
            _ => return Err(self.protocol(format!("unexpected answer to {action}"))),
        }
        self.busy = Some("COPY");
        Ok(CopyOut {
            client: self,
            sql: sql.to_owned(),
            done: false,
            rows_total: 0,
        })
    }
}

impl CopyOut<'_> {
    /// The next chunk of complete rows; `Ok(None)` once the COPY has ended (the session is then
    /// ready for the next command).
    pub async fn next_chunk(&mut self) -> Result<Option<CopyChunk>, Error> {
        if self.done {
            return Ok(None);
        }
        let mut data = BytesMut::with_capacity(CHUNK_BYTES + 1024);
        let mut rows = 0usize;
        while data.len() < CHUNK_BYTES {
            match self.client.recv().await? {
                Backend::Message(Message::CopyData(body)) => {
                    let row = body.data();
                    if row.last() != Some(&b'\n') {
                        return Err(self.client.protocol(format!(
                            "COPY `{}` sent a row that does not end with a newline",
                            abbreviate(&self.sql)
                        )));
                    }
                    data.extend_from_slice(row);
                    rows += 1;
                }
                Backend::Message(Message::CopyDone) => {
                    let action = format!("COPY `{}`", abbreviate(&self.sql));
                    self.client.finish_query(&action).await?;
                    self.client.busy = None;
                    self.done = true;
                    break;
                }
                Backend::Message(Message::ErrorResponse(body)) => {
                    let action = format!("COPY `{}`", abbreviate(&self.sql));
                    let error = self.client.server_error(&body, &action);
                    self.client.finish_query(&action).await?;
                    self.client.busy = None;
                    self.done = true;
                    return Err(error);
                }
                _ => return Err(self.client.protocol("unexpected message in COPY OUT")),
            }
        }
        self.rows_total += rows as u64;
        if rows == 0 {
            return Ok(None);
        }
        Ok(Some(CopyChunk::new(data.freeze(), rows)))
    }

    /// Rows delivered so far.
    pub fn rows_read(&self) -> u64 {
        self.rows_total
    }
}
