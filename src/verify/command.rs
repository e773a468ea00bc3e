//! `etl verify [--table schema.name]... [--repair]`: reads the same configuration as
//! `etl replicate`, runs [`super::verify`], prints the report on stdout and ends with exit code
//! 0 (equal), 3 (drift found, [`crate::exit::DriftFound`]), 2 (a table or destination that
//! cannot be verified as asked) or 1 (a failure).

use crate::config::{Config, DestinationConfig, PipelineConfig};
use crate::exit::{DriftFound, UsageError};

use super::Options;

/// Runs `etl verify`.
pub async fn run(config: Config, options: Options) -> anyhow::Result<()> {
    let pipeline: PipelineConfig = config.section("pipeline")?;
    let source = config.checked("pipeline", pipeline.source())?;
    let destination: DestinationConfig = config.section("destination")?;
    config.checked("destination", destination.validate())?;
    let report = async {
        let target = super::Target::from_config(&destination)?;
        super::verify(
            pipeline.id,
            &pipeline.publication_name,
            &source,
            &target,
            &options,
        )
        .await
    }
    .await
    .map_err(|error| {
        if error.is_usage() {
            anyhow::Error::new(UsageError(error.into()))
        } else {
            anyhow::Error::new(error)
        }
    })?;
    println!("{report}");
    let drifted: Vec<String> = report.drifted().map(|t| t.table.clone()).collect();
    if drifted.is_empty() {
        return Ok(());
    }
    let mut error = anyhow::Error::new(DriftFound(drifted));
    if options.repair {
        error = error.context("repair requested: the drifted tables are being copied again");
    }
    Err(error)
}
