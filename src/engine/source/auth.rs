//! Authentication exchange after the startup message: trust, cleartext password, md5 and
//! SCRAM-SHA-256 (without channel binding). Other methods (GSS, SSPI, Kerberos) are refused
//! with an error naming the method.

use fallible_iterator::FallibleIterator;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, SCRAM_SHA_256, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;

use super::connection::{Backend, ReplicationClient, parse_error_fields};
use super::error::Error;
use crate::config::PgConnection;

/// Runs the authentication exchange until `AuthenticationOk`.
pub(super) async fn authenticate(
    client: &mut ReplicationClient,
    conn: &PgConnection,
) -> Result<(), Error> {
    let fail = |client: &ReplicationClient, message: String| Error::Auth {
        target: client.target.clone(),
        user: conn.username.clone(),
        message,
    };
    let password = |client: &ReplicationClient| {
        conn.password
            .as_ref()
            .map(|p| p.expose().as_bytes().to_vec())
            .ok_or_else(|| {
                fail(
                    client,
                    "the server asks for a password, but none is configured".to_owned(),
                )
            })
    };
    let mut scram: Option<ScramSha256> = None;
    loop {
        let message = match client.recv().await? {
            Backend::Message(message) => message,
            Backend::CopyBoth => return Err(client.protocol("CopyBothResponse during login")),
        };
        match message {
            Message::AuthenticationOk => return Ok(()),
            Message::AuthenticationCleartextPassword => {
                let password = password(client)?;
                frontend::password_message(&password, &mut client.write_buf)
                    .map_err(|e| client.protocol(e.to_string()))?;
                client.flush().await?;
            }
            Message::AuthenticationMd5Password(body) => {
                let password = password(client)?;
                let hash = md5_hash(conn.username.as_bytes(), &password, body.salt());
                frontend::password_message(hash.as_bytes(), &mut client.write_buf)
                    .map_err(|e| client.protocol(e.to_string()))?;
                client.flush().await?;
            }
            Message::AuthenticationSasl(body) => {
                let mut mechanisms = body.mechanisms();
                let mut offered = Vec::new();
                while let Some(mechanism) = mechanisms
                    .next()
                    .map_err(|e| client.protocol(format!("malformed SASL mechanisms: {e}")))?
                {
                    offered.push(mechanism.to_owned());
                }
                if !offered.iter().any(|m| m == SCRAM_SHA_256) {
                    return Err(fail(
                        client,
                        format!(
                            "the server offers SASL mechanisms {offered:?}, none of which is supported (SCRAM-SHA-256)"
                        ),
                    ));
                }
                let password = password(client)?;
                // We do not implement channel binding, and say so ("n"): this is accepted whether
                // or not the server offers SCRAM-SHA-256-PLUS.
                let state = ScramSha256::new(&password, ChannelBinding::unsupported());
                frontend::sasl_initial_response(
                    SCRAM_SHA_256,
                    state.message(),
                    &mut client.write_buf,
                )
                .map_err(|e| client.protocol(e.to_string()))?;
                client.flush().await?;
                scram = Some(state);
            }
            Message::AuthenticationSaslContinue(body) => {
                let Some(state) = scram.as_mut() else {
                    return Err(client.protocol("SASL continue without a SASL exchange"));
                };
                state
                    .update(body.data())
                    .map_err(|e| fail(client, format!("SCRAM exchange failed: {e}")))?;
                frontend::sasl_response(state.message(), &mut client.write_buf)
                    .map_err(|e| client.protocol(e.to_string()))?;
                client.flush().await?;
            }
            Message::AuthenticationSaslFinal(body) => {
                let Some(state) = scram.as_mut() else {
                    return Err(client.protocol("SASL final without a SASL exchange"));
                };
                state.finish(body.data()).map_err(|e| {
                    fail(
                        client,
                        format!("the server's SCRAM signature is invalid: {e}"),
                    )
                })?;
            }
            Message::ErrorResponse(body) => {
                let error = parse_error_fields(&body);
                // Class 28 is invalid authorization; anything else (e.g. the database is starting
                // up, too many connections, unknown database) keeps its SQLSTATE for retry logic.
                if error.code.starts_with("28") {
                    return Err(fail(client, error.to_string()));
                }
                return Err(Error::Server {
                    target: client.target.clone(),
                    action: format!("logging in as `{}`", conn.username),
                    error: Box::new(error),
                });
            }
            Message::AuthenticationGss
            | Message::AuthenticationGssContinue(_)
            | Message::AuthenticationKerberosV5
            | Message::AuthenticationSspi
            | Message::AuthenticationScmCredential => {
                return Err(fail(
                    client,
                    "the server requires GSSAPI/SSPI/Kerberos authentication, which is not supported \
                     (use scram-sha-256, md5, password or trust in pg_hba.conf)"
                        .to_owned(),
                ));
            }
            _ => return Err(client.protocol("unexpected message during authentication")),
        }
    }
}
