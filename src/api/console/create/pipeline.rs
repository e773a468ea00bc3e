//! The new pipeline form: a source, a destination, and an existing publication of the source or
//! a new one of the tables picked (created through the publications handler first).

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use maud::html;
use serde::Deserialize;

use super::{form_page, refused};
use crate::api::console::ConsoleState;
use crate::api::console::error::ConsoleError;
use crate::api::console::forms::{Problems, input, select};
use crate::api::console::layout::csrf_field;
use crate::api::console::pipelines::{destination_kind, names};
use crate::api::console::session::{Form, Posted, Session};
use crate::api::db::configured::ConfigTable;
use crate::api::domain::pipeline::CreatePipeline;
use crate::api::domain::source::{CreatePublication, TableName};
use crate::api::error::ApiError;
use crate::api::extract::{JsonBody, PathParam, TenantId};
use crate::api::routes::{pipelines, publications, sources};
use crate::api::source_db::publications as source_publications;

const PIPELINE_FIELDS: [&str; 5] = [
    "source_id",
    "destination_id",
    "publication_name",
    "new_publication",
    "tables",
];

/// `?source_id=`
#[derive(Debug, Deserialize)]
pub struct SourceChoice {
    #[serde(default)]
    source_id: Option<i64>,
}

async fn pipeline_form(
    state: &ConsoleState,
    session: &Session,
    tenant: &TenantId,
    source_id: Option<i64>,
    form: &Form,
    problems: &Problems,
) -> Result<Response, ConsoleError> {
    let sources = names(state, ConfigTable::Sources, tenant).await?;
    let destinations = names(state, ConfigTable::Destinations, tenant).await?;
    let source_id = source_id.or_else(|| sources.keys().next().copied());
    // The chosen source's publications and tables, or why they cannot be read.
    let on_source = match source_id {
        Some(id) if sources.contains_key(&id) => {
            let pool = sources::connect_source(&state.app, tenant, id).await;
            match pool {
                Ok(pool) => {
                    let found = async {
                        Ok::<_, ApiError>((
                            source_publications::list(&pool).await?,
                            source_publications::tables(&pool).await?,
                        ))
                    }
                    .await;
                    pool.close().await;
                    Some(found)
                }
                Err(error) => Some(Err(error)),
            }
        }
        _ => None,
    };
    let source_options: Vec<(String, String)> = sources
        .values()
        .map(|s| (s.id.to_string(), s.name.clone()))
        .collect();
    let destination_options: Vec<(String, String)> = destinations
        .values()
        .map(|d| {
            (
                d.id.to_string(),
                format!("{} ({})", d.name, destination_kind(d)),
            )
        })
        .collect();
    let chosen = source_id.map(|id| id.to_string()).unwrap_or_default();
    let picked: Vec<&str> = form.all("tables").collect();
    Ok(form_page(
        session,
        "New pipeline",
        problems,
        html! {
            @if sources.is_empty() || destinations.is_empty() {
                p { "A pipeline needs a source and a destination: "
                    a href="/sources/new" { "create a source" } " · "
                    a href="/destinations/new" { "create a destination" } }
            }
            form.panel method="get" action="/pipelines/new" {
                label for="pick-source" { "Source" }
                select id="pick-source" name="source_id" {
                    @for (value, text) in &source_options {
                        option value=(value) selected[*value == chosen] { (text) }
                    }
                }
                " " button type="submit" { "Show its publications" }
            }
            @if let Some(id) = source_id {
                form.panel method="post" action="/pipelines/new" {
                    (csrf_field(session))
                    input type="hidden" name="source_id" value=(id);
                    (select(form, problems, "destination_id", "Destination", &destination_options, ""))
                    @match &on_source {
                        Some(Err(error)) => { p.error { "The source cannot be read: " (error.to_string()) } }
                        Some(Ok((pubs, tables))) => {
                            label for="publication_name" { "Publication" }
                            select id="publication_name" name="publication_name" {
                                option value="" { "— create a new one below —" }
                                @for p in pubs {
                                    option value=(p.name) selected[form.get("publication_name") == p.name] {
                                        (p.name) " (" (p.tables.len()) " tables)"
                                    }
                                }
                            }
                            @for message in problems.for_field("publication_name") { div.field-error { (message) } }
                            fieldset {
                                legend { "…or a new publication of these tables" }
                                (input(form, problems, "new_publication", "New publication name", "text", "orders_pub"))
                                div.checks {
                                    @for t in tables {
                                        label {
                                            input type="checkbox" name="tables" value=(t.id)
                                                checked[picked.contains(&t.id.to_string().as_str())];
                                            " " (t.schema) "." (t.name)
                                        }
                                    }
                                }
                                @for message in problems.for_field("tables") { div.field-error { (message) } }
                            }
                        }
                        None => {}
                    }
                    p { button.primary type="submit" { "Create pipeline" } }
                }
            }
        },
    ))
}

/// `GET /pipelines/new`
pub async fn new_pipeline(
    State(state): State<ConsoleState>,
    session: Session,
    Query(choice): Query<SourceChoice>,
) -> Result<Response, ConsoleError> {
    let tenant = session.tenant()?;
    pipeline_form(
        &state,
        &session,
        &tenant,
        choice.source_id,
        &Form::default(),
        &Problems::default(),
    )
    .await
}

/// `POST /pipelines/new`: creates the new publication first when one is asked for.
pub async fn create_pipeline(
    State(state): State<ConsoleState>,
    posted: Posted,
) -> Result<Response, ConsoleError> {
    let tenant = posted.session.tenant()?;
    let form = &posted.form;
    let again = |problems: Problems| {
        let (state, session, tenant) = (&state, &posted.session, &tenant);
        let source = form.get("source_id").parse().ok();
        async move { pipeline_form(state, session, tenant, source, form, &problems).await }
    };
    let number = |field: &str| form.get(field).parse::<i64>();
    let (Ok(source_id), Ok(destination_id)) = (number("source_id"), number("destination_id"))
    else {
        return again(Problems::field(
            "destination_id",
            "choose a source and a destination",
        ))
        .await;
    };
    let new_publication = form.get("new_publication");
    let publication_name = if new_publication.is_empty() {
        form.get("publication_name").to_owned()
    } else {
        match create_publication(&state, &tenant, source_id, new_publication, form).await {
            Ok(name) => name,
            Err(problems) => return again(problems?).await,
        }
    };
    if publication_name.is_empty() {
        return again(Problems::field(
            "publication_name",
            "choose a publication, or name a new one and pick its tables",
        ))
        .await;
    }
    let body = CreatePipeline {
        source_id,
        destination_id,
        publication_name,
        config: None,
    };
    let app = State(state.app.clone());
    match pipelines::create_pipeline(app, tenant.clone(), JsonBody(body)).await {
        Ok((_, created)) => {
            Ok(Redirect::to(&format!("/pipelines/{}", created.0.id)).into_response())
        }
        Err(error) => again(refused(error, &PIPELINE_FIELDS)?).await,
    }
}

/// Creates publication `name` on the source with the tables picked (by oid).
async fn create_publication(
    state: &ConsoleState,
    tenant: &TenantId,
    source_id: i64,
    name: &str,
    form: &Form,
) -> Result<String, Result<Problems, ConsoleError>> {
    let picked: Vec<i64> = form.all("tables").filter_map(|t| t.parse().ok()).collect();
    if picked.is_empty() {
        return Err(Ok(Problems::field(
            "tables",
            "pick the tables of the new publication",
        )));
    }
    let all = async {
        let pool = sources::connect_source(&state.app, tenant, source_id).await?;
        let tables = source_publications::tables(&pool).await;
        pool.close().await;
        tables
    }
    .await
    .map_err(|e| refused(e, &PIPELINE_FIELDS))?;
    let tables: Vec<TableName> = all
        .into_iter()
        .filter(|t| picked.contains(&t.id))
        .map(|t| TableName {
            schema: t.schema,
            name: t.name,
        })
        .collect();
    let body = CreatePublication {
        name: name.to_owned(),
        tables,
    };
    let app = State(state.app.clone());
    publications::create_publication(app, tenant.clone(), PathParam(source_id), JsonBody(body))
        .await
        .map(|(_, created)| created.0.name)
        .map_err(|e| {
            refused(e, &PIPELINE_FIELDS).map(|mut p| {
                // A message about the publication belongs next to its name.
                for (field, _) in &mut p.messages {
                    if field.is_empty() {
                        *field = "new_publication".into();
                    }
                }
                p
            })
        })
}
