//! The OpenAPI document (`GET /api-docs/openapi.json`, browsable at `/swagger-ui`), generated
//! from the handlers' `#[utoipa::path]` annotations and the domain types' schemas.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::domain::{destination, image, pipeline, source, tenant};
use super::error::ErrorBody;
use super::routes::{
    destinations, health, images, pipeline_actions, pipeline_reset, pipeline_verify, pipelines,
    publications, sources, table_actions, tenants,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "etl control plane", description = "Tenants, sources, destinations and pipelines that replicate PostgreSQL through logical replication."),
    modifiers(&BearerAuth),
    security(("api_key" = [])),
    paths(
        health::health_check,
        tenants::create_tenant, tenants::list_tenants, tenants::get_tenant,
        tenants::update_tenant, tenants::put_tenant, tenants::delete_tenant,
        images::create_image, images::list_images, images::get_image, images::update_image,
        images::delete_image,
        sources::create_source, sources::list_sources, sources::get_source,
        sources::update_source, sources::delete_source, sources::list_source_tables,
        sources::validate_source,
        publications::create_publication, publications::list_publications,
        publications::get_publication, publications::update_publication,
        publications::delete_publication,
        destinations::create_destination, destinations::list_destinations,
        destinations::get_destination, destinations::update_destination,
        destinations::delete_destination, destinations::validate_destination,
        pipelines::create_pipeline, pipelines::list_pipelines, pipelines::get_pipeline,
        pipelines::update_pipeline, pipelines::delete_pipeline,
        pipeline_actions::start_pipeline, pipeline_actions::stop_pipeline,
        pipeline_actions::restart_pipeline, pipeline_actions::pipeline_status,
        pipeline_actions::replication_status, pipeline_actions::rollback_tables,
        table_actions::resync_table,
        pipeline_reset::reset_pipeline,
        pipeline_verify::verify_pipeline,
    ),
    components(schemas(
        ErrorBody, health::Health,
        tenant::Tenant, tenant::CreateTenant, tenant::UpdateTenant, tenant::Tenants,
        image::Image, image::CreateImage, image::UpdateImage, image::Images,
        source::Source, source::Sources, source::CreateSource, source::UpdateSource,
        source::SourceConfigIn, source::SourceConfigView, source::TlsSettings,
        source::SourceTable, source::SourceTables, source::TableName,
        source::Publication, source::Publications, source::CreatePublication,
        source::UpdatePublication, source::ValidateSource, source::ValidationReport,
        source::Finding, source::FindingLevel,
        destination::Destination, destination::Destinations, destination::CreateDestination,
        destination::UpdateDestination, destination::ValidateDestination,
        pipeline::Pipeline, pipeline::Pipelines, pipeline::CreatePipeline,
        pipeline::UpdatePipeline, pipeline::PipelineSettings, pipeline::DesiredState,
        pipeline::PipelineState, pipeline::PipelineStatus, pipeline::ReplicationStatus,
        pipeline::TableReplicationState, pipeline::SlotStatus,
        crate::api::lag::forecast::WalForecast, crate::api::lag::forecast::ForecastLevel, pipeline::RollbackRequest,
        pipeline::RollbackTables, pipeline::RollbackTarget, pipeline::RollbackResult,
        pipeline::RolledBackTable, pipeline::DeletedPipeline, pipeline_reset::PipelineReset,
        pipeline_verify::VerifyRequest, crate::verify::Report, crate::verify::TableReport,
        crate::verify::TableStatus, crate::verify::RangeDrift, crate::verify::RowDrift,
    )),
    tags(
        (name = "tenants"), (name = "images"), (name = "sources"), (name = "publications"),
        (name = "destinations"), (name = "pipelines"), (name = "health"),
    )
)]
pub struct ApiDoc;

/// Declares the `Authorization: Bearer <key>` scheme every `/v1` route uses.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
