//! Pipeline identity: a pipeline's replication state and slot on the source serve exactly one
//! destination, or the pipeline refuses to start.
//!
//! This module owns the `etl.pipeline_identities` table (one row per pipeline: a random token,
//! the source, the destination's description) and the start-up comparison of that row with the
//! identity the destination keeps beside its positions ([`Destination::read_identity`]). It also
//! applies the "destination checkpoint is the truth" rule per table
//! ([`recopy_lost_tables`]): a table the state calls copied but whose copy the destination does
//! not hold is copied again. [`footprint`] tells what a pipeline id has left on a source, for
//! `etl pipeline reset` and the control plane's checks. Dropping that state is
//! [`super::cleanup`]'s job.
//!
//! Start-up ([`check`]), with S the source's identity and D the destination's:
//!
//! | S | D | anything copied? | outcome |
//! |---|---|---|---|
//! | token t | token t | – | resume |
//! | token t | token u | – | refuse: the destination holds another pipeline's copy |
//! | some | none | yes | refuse: the destination is new, emptied or replaced |
//! | some | none | no | adopt: write a new identity to both |
//! | none | this pipeline id and source | – | adopt (e.g. after a reset: everything is copied again) |
//! | none | another pipeline or source | – | refuse |
//! | none | none | – | adopt (a new pipeline, or state written before identities existed) |
//!
//! A new identity is written to the destination first, then to the source, so a crash between
//! the two leaves the "none / this pipeline" row of the table, which adopts. Destinations that
//! cannot keep an identity ([`Destination::keeps_identity`] is false: `discard`, `jsonl` on
//! stdout) are only compared by description.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::destination::Destination;
use super::error::Error;
use super::state::{StateStore, TableState, TableStates};
use crate::base::schema::TableId;
use crate::config::LostCopyBehavior;

/// What a pipeline's state and its destination both record, so each knows the other.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineIdentity {
    /// Random; a pipeline that starts from nothing gets a new one.
    pub token: String,
    pub pipeline_id: u64,
    /// The source: `database \`shop\` of system 7312…` (survives host renames).
    pub source: String,
    /// The destination's kind and location, never a secret ([`Destination::describe`]).
    pub destination: String,
}

impl PipelineIdentity {
    /// A new identity with a random token.
    pub fn new(pipeline_id: u64, source: String, destination: String) -> Self {
        PipelineIdentity {
            token: format!("{:032x}", rand::random::<u128>()),
            pipeline_id,
            source,
            destination,
        }
    }
}

/// What to do about a pipeline's state and a destination that do not belong together.
const WAYS_OUT: &str = "Ways out: give this pipeline its own `pipeline.id` (each id owns its \
    state and slot on the source), or drop the state and slot so that the next start copies \
    every table again: `etl pipeline reset` with this configuration, or, for a pipeline of the \
    control plane,";

/// Why a pipeline refuses to start: its state on the source and its destination do not belong
/// together, and streaming would leave the destination without the rows copied before.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The state says tables were copied, into a destination that holds no copy.
    #[error(
        "pipeline {pipeline_id}: its replication state on the source belongs to destination \
         `{state_destination}`, but destination `{destination}` holds no copy of this pipeline \
         (it is new, was emptied or was replaced); streaming into it would leave out every row \
         copied before. {WAYS_OUT} `POST /v1/pipelines/{pipeline_id}/reset`"
    )]
    DestinationHoldsNoCopy {
        pipeline_id: u64,
        state_destination: String,
        destination: String,
    },
    /// The destination holds the copy of another pipeline (or of an earlier life of this one).
    #[error(
        "pipeline {pipeline_id}: destination `{destination}` holds the copy of pipeline \
         {holder_pipeline} from source {holder_source} (identity {holder_token}), but this \
         pipeline's state on the source {state}; writing into it would mix two pipelines. \
         Point this pipeline at a destination of its own, or empty the destination and reset \
         the pipeline. {WAYS_OUT} `POST /v1/pipelines/{pipeline_id}/reset`"
    )]
    DestinationOfAnotherPipeline {
        pipeline_id: u64,
        destination: String,
        holder_pipeline: u64,
        holder_source: String,
        holder_token: String,
        /// How the source's state describes itself, for the message.
        state: String,
    },
    /// A destination that cannot keep an identity is not the one the state belongs to.
    #[error(
        "pipeline {pipeline_id}: its replication state on the source belongs to destination \
         `{state_destination}`, not to `{destination}`. {WAYS_OUT} `POST /v1/pipelines/{pipeline_id}/reset`"
    )]
    StateOfAnotherDestination {
        pipeline_id: u64,
        state_destination: String,
        destination: String,
    },
}

/// The outcome of comparing the two identities.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Decision {
    /// They match (or cannot be compared further): resume as stored.
    Resume,
    /// Record a new identity (in the destination when it keeps one, then on the source).
    Adopt,
    Refuse(IdentityError),
}

/// What the pipeline found at start-up.
struct Found<'a> {
    pipeline_id: u64,
    source: &'a str,
    destination: &'a str,
    keeps_identity: bool,
    stored: Option<&'a PipelineIdentity>,
    held: Option<&'a PipelineIdentity>,
    /// Some table of the state was copied (so the destination must hold rows).
    copied: bool,
}

fn decide(found: &Found<'_>) -> Decision {
    let pipeline_id = found.pipeline_id;
    if !found.keeps_identity {
        return match found.stored {
            Some(stored) if stored.destination != found.destination => {
                Decision::Refuse(IdentityError::StateOfAnotherDestination {
                    pipeline_id,
                    state_destination: stored.destination.clone(),
                    destination: found.destination.to_owned(),
                })
            }
            Some(_) => Decision::Resume,
            None => Decision::Adopt,
        };
    }
    match (found.stored, found.held) {
        (Some(stored), Some(held)) if stored.token == held.token => Decision::Resume,
        (stored, Some(held))
            if stored.is_some()
                || held.pipeline_id != pipeline_id
                || held.source != found.source =>
        {
            let state = match stored {
                Some(stored) => format!(
                    "has identity {} and belongs to destination `{}`",
                    stored.token, stored.destination
                ),
                None => "has no identity".to_owned(),
            };
            Decision::Refuse(IdentityError::DestinationOfAnotherPipeline {
                pipeline_id,
                destination: found.destination.to_owned(),
                holder_pipeline: held.pipeline_id,
                holder_source: held.source.clone(),
                holder_token: held.token.clone(),
                state,
            })
        }
        (Some(stored), None) if found.copied => {
            Decision::Refuse(IdentityError::DestinationHoldsNoCopy {
                pipeline_id,
                state_destination: stored.destination.clone(),
                destination: found.destination.to_owned(),
            })
        }
        _ => Decision::Adopt,
    }
}

/// Compares the pipeline's identity on the source with the destination's; records a new one
/// where [`decide`] adopts; refuses with [`IdentityError`] otherwise. Call before the apply slot
/// is created or used.
pub(crate) async fn check<D: Destination>(
    pipeline_id: u64,
    pool: &PgPool,
    store: &StateStore,
    destination: &D,
) -> Result<(), Error> {
    let source = describe_source(pool).await?;
    let description = destination.describe();
    let stored = read_identity(pool, pipeline_id).await?;
    let keeps_identity = destination.keeps_identity();
    let held = if keeps_identity {
        destination.read_identity().await?
    } else {
        None
    };
    let copied = store.table_states().await?.values().any(was_copied);
    let found = Found {
        pipeline_id,
        source: &source,
        destination: &description,
        keeps_identity,
        stored: stored.as_ref(),
        held: held.as_ref(),
        copied,
    };
    match decide(&found) {
        Decision::Resume => Ok(()),
        Decision::Refuse(error) => Err(Error::Identity(error)),
        Decision::Adopt => {
            let identity = PipelineIdentity::new(pipeline_id, source, description);
            if keeps_identity {
                destination.write_identity(&identity).await?;
            }
            write_identity(pool, &identity).await?;
            tracing::info!(pipeline_id, token = %identity.token,
                destination = %identity.destination, "pipeline identity recorded");
            Ok(())
        }
    }
}

/// Whether the state says the table's rows are in the destination (or were, before an error).
fn was_copied(state: &TableState) -> bool {
    matches!(
        state,
        TableState::FinishedCopy
            | TableState::SyncDone(_)
            | TableState::Ready
            | TableState::Errored(_)
    )
}

/// The destination checkpoint is the truth: a table the state streams (`sync_done`, `ready`)
/// whose finished copy the destination does not hold (its mirror dropped or truncated by hand,
/// the file replaced) goes back to `init` and is copied again, never streamed with a gap.
pub(crate) async fn recopy_lost_tables<D: Destination>(
    destination: &D,
    tables: &mut TableStates,
    behavior: LostCopyBehavior,
) -> Result<(), Error> {
    let Some(held) = destination.copied_tables().await? else {
        return Ok(());
    };
    let lost: Vec<(TableId, &'static str)> = tables
        .iter()
        .filter(|(id, state)| {
            matches!(state, TableState::SyncDone(_) | TableState::Ready) && !held.contains(id)
        })
        .map(|(id, state)| (*id, state.name()))
        .collect();
    if behavior == LostCopyBehavior::Refuse && !lost.is_empty() {
        let names = lost
            .iter()
            .map(|(id, _)| {
                tables
                    .name(*id)
                    .map_or_else(|| format!("relation {id}"), ToString::to_string)
            })
            .collect();
        return Err(Error::LostCopy {
            destination: destination.describe(),
            tables: names,
        });
    }
    for (id, state) in lost {
        tracing::warn!(table_id = id.0, state, destination = %destination.describe(),
            "the destination holds no finished copy of this table (dropped, truncated or \
             replaced); copying it again");
        tables.set(id, TableState::Init).await?;
    }
    Ok(())
}

/// The source as an identity records it: its system identifier and database name, which do
/// not change when it is reached under another host name.
async fn describe_source(pool: &PgPool) -> Result<String, Error> {
    let database: String = sqlx::query_scalar("select current_database()::text")
        .fetch_one(pool)
        .await
        .map_err(Error::query("reading the source's database name"))?;
    let system: Result<String, sqlx::Error> =
        sqlx::query_scalar("select system_identifier::text from pg_control_system()")
            .fetch_one(pool)
            .await;
    match system {
        Ok(system) => Ok(format!("database `{database}` of system {system}")),
        // A managed service may revoke the function: the database name alone then.
        Err(e) if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42501") => {
            Ok(format!("database `{database}`"))
        }
        Err(e) => Err(Error::query("reading the source's system identifier")(e)),
    }
}

async fn has_table(pool: &PgPool, table: &str) -> Result<bool, Error> {
    sqlx::query_scalar("select to_regclass($1) is not null")
        .bind(table)
        .fetch_one(pool)
        .await
        .map_err(Error::query("looking for an etl table"))
}

/// The identity stored on the source for `pipeline_id`.
pub async fn read_identity(
    pool: &PgPool,
    pipeline_id: u64,
) -> Result<Option<PipelineIdentity>, Error> {
    if !has_table(pool, "etl.pipeline_identities").await? {
        return Ok(None);
    }
    let row: Option<(String, String, String)> = sqlx::query_as(
        "select token, source, destination from etl.pipeline_identities where pipeline_id = $1",
    )
    .bind(pipeline_id as i64)
    .fetch_optional(pool)
    .await
    .map_err(Error::query("reading the pipeline identity"))?;
    Ok(row.map(|(token, source, destination)| PipelineIdentity {
        token,
        pipeline_id,
        source,
        destination,
    }))
}

async fn write_identity(pool: &PgPool, identity: &PipelineIdentity) -> Result<(), Error> {
    sqlx::query(
        "insert into etl.pipeline_identities (pipeline_id, token, source, destination) \
         values ($1, $2, $3, $4) on conflict (pipeline_id) do update set token = excluded.token, \
         source = excluded.source, destination = excluded.destination, created_at = now()",
    )
    .bind(identity.pipeline_id as i64)
    .bind(&identity.token)
    .bind(&identity.source)
    .bind(&identity.destination)
    .execute(pool)
    .await
    .map_err(Error::query("storing the pipeline identity"))?;
    Ok(())
}

/// What a pipeline id has left on a source: its identity, table states and slots.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Footprint {
    pub identity: Option<PipelineIdentity>,
    /// Current table states by name (`ready` → 3).
    pub tables: BTreeMap<String, usize>,
    /// Whether a durable position is stored.
    pub progress: bool,
    /// Slot names, with the PID of the session streaming from each (if any).
    pub slots: Vec<(String, Option<i32>)>,
}

impl Footprint {
    /// Nothing of the pipeline is on the source.
    pub fn is_empty(&self) -> bool {
        self.identity.is_none() && self.tables.is_empty() && !self.progress && self.slots.is_empty()
    }

    /// A slot a session is streaming from: a replicator of this id is running.
    pub fn active_slot(&self) -> Option<(&str, i32)> {
        self.slots
            .iter()
            .find_map(|(name, pid)| pid.map(|pid| (name.as_str(), pid)))
    }
}

impl fmt::Display for Footprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if let Some(identity) = &self.identity {
            parts.push(format!(
                "identity {} (destination `{}`)",
                identity.token, identity.destination
            ));
        }
        if !self.tables.is_empty() {
            let counts: Vec<String> = self
                .tables
                .iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect();
            parts.push(format!("table states: {}", counts.join(", ")));
        }
        if self.progress {
            parts.push("a stored position".to_owned());
        }
        if !self.slots.is_empty() {
            let names: Vec<&str> = self.slots.iter().map(|(n, _)| n.as_str()).collect();
            parts.push(format!("slots {}", names.join(", ")));
        }
        if parts.is_empty() {
            return f.write_str("nothing");
        }
        f.write_str(&parts.join("; "))
    }
}

/// Reads what `pipeline_id` has left on the source (works before the `etl` schema exists).
pub async fn footprint(pool: &PgPool, pipeline_id: u64) -> Result<Footprint, Error> {
    let id = pipeline_id as i64;
    let mut found = Footprint {
        identity: read_identity(pool, pipeline_id).await?,
        ..Footprint::default()
    };
    if has_table(pool, "etl.replication_state").await? {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "select state, count(*) from etl.replication_state \
             where pipeline_id = $1 and is_current group by state order by state",
        )
        .bind(id)
        .fetch_all(pool)
        .await
        .map_err(Error::query("reading the pipeline's table states"))?;
        found.tables = rows
            .into_iter()
            .map(|(state, n)| (state, n as usize))
            .collect();
    }
    if has_table(pool, "etl.replication_progress").await? {
        found.progress = sqlx::query_scalar(
            "select exists (select 1 from etl.replication_progress where pipeline_id = $1)",
        )
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(Error::query("reading the pipeline's progress"))?;
    }
    found.slots = sqlx::query_as(
        "select slot_name::text, active_pid from pg_replication_slots \
         where database = current_database() and (slot_name = $1 or slot_name like $2) \
         order by slot_name",
    )
    .bind(super::apply_slot_name(pipeline_id))
    .bind(format!("etl\\_sync\\_{pipeline_id}\\_%"))
    .fetch_all(pool)
    .await
    .map_err(Error::query("listing the pipeline's slots"))?;
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(
        token: &str,
        pipeline_id: u64,
        source: &str,
        destination: &str,
    ) -> PipelineIdentity {
        PipelineIdentity {
            token: token.into(),
            pipeline_id,
            source: source.into(),
            destination: destination.into(),
        }
    }

    fn found<'a>(
        stored: Option<&'a PipelineIdentity>,
        held: Option<&'a PipelineIdentity>,
        copied: bool,
    ) -> Found<'a> {
        Found {
            pipeline_id: 1,
            source: "db",
            destination: "sqlite b.db",
            keeps_identity: true,
            stored,
            held,
            copied,
        }
    }

    /// The outcome's name, so cases can state what they expect.
    fn outcome(decision: &Decision) -> &'static str {
        match decision {
            Decision::Resume => "resume",
            Decision::Adopt => "adopt",
            Decision::Refuse(_) => "refuse",
        }
    }

    #[test]
    fn identities_decide_between_resume_adopt_and_refuse() {
        let ours = identity("t", 1, "db", "sqlite b.db");
        let other_token = identity("u", 1, "db", "sqlite a.db");
        let other_pipeline = identity("u", 2, "db", "sqlite b.db");
        let other_source = identity("u", 1, "other db", "sqlite b.db");
        let cases = [
            (
                "same token",
                found(Some(&ours), Some(&ours), true),
                "resume",
            ),
            (
                "another token",
                found(Some(&ours), Some(&other_token), true),
                "refuse",
            ),
            (
                "copied state, empty destination",
                found(Some(&ours), None, true),
                "refuse",
            ),
            (
                "nothing copied yet",
                found(Some(&ours), None, false),
                "adopt",
            ),
            (
                "after a reset, same pipeline",
                found(None, Some(&other_token), true),
                "adopt",
            ),
            (
                "another pipeline's destination",
                found(None, Some(&other_pipeline), false),
                "refuse",
            ),
            (
                "another source's destination",
                found(None, Some(&other_source), false),
                "refuse",
            ),
            ("a new pipeline", found(None, None, false), "adopt"),
        ];
        for (description, case, expected) in cases {
            let decision = decide(&case);
            assert_eq!(outcome(&decision), expected, "{description}: {decision:?}");
        }
    }

    #[test]
    fn a_destination_without_identity_is_compared_by_description() {
        let ours = identity("t", 1, "db", "discard");
        let mut case = found(Some(&ours), None, true);
        case.keeps_identity = false;
        case.destination = "discard";
        assert_eq!(decide(&case), Decision::Resume);
        case.destination = "jsonl stdout";
        let Decision::Refuse(error) = decide(&case) else {
            panic!("a state of another destination is refused");
        };
        let message = error.to_string();
        for part in [
            "pipeline 1",
            "`discard`",
            "`jsonl stdout`",
            "etl pipeline reset",
            "pipeline.id",
        ] {
            assert!(message.contains(part), "{part} missing from: {message}");
        }
    }
}
