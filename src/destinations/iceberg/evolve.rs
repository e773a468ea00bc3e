//! Source schema changes as Iceberg schema evolution: added columns get new field ids, dropped
//! ones leave the current schema (old snapshots keep them), renames keep the field id, and
//! retypes are allowed where Iceberg widens (int → long, float → double, decimal(p,s) →
//! decimal(p',s) with p' ≥ p; and any type whose Iceberg type does not change). Any other change
//! errors the table, naming the column, as does dropping a column the table is partitioned by.
//! The new schema is committed as a new metadata file
//! (iceberg's own schema action only adds and deletes columns).

use std::sync::Arc;

use iceberg::spec::{NestedField, NestedFieldRef, PrimitiveType, Schema, Type};
use iceberg::table::Table;

use super::catalog::SqlCatalog;
use super::types::Kind;
use super::{META_COLUMNS, error};
use crate::base::schema::TableSchema;
use crate::destinations::schema_diff::SchemaDiff;
use crate::engine::destination::{Error, Result};

/// Commits the schema of `new` (the source table changed from `old`) to `table`; `with_meta`
/// (changelog mode) keeps the `_etl_*` columns at the end.
pub async fn alter(
    catalog: &SqlCatalog,
    table: Table,
    old: &TableSchema,
    new: &TableSchema,
    with_meta: bool,
) -> Result<Table> {
    let current = table.metadata().current_schema().clone();
    let mut next_id = table.metadata().last_column_id();
    let evolved = evolve(&current, old, new, &mut next_id, with_meta)?;
    if evolved == current.as_struct().fields() {
        return Ok(table);
    }
    for field in table.metadata().default_partition_spec().fields() {
        if !evolved.iter().any(|f| f.id == field.source_id) {
            let column = current
                .name_by_field_id(field.source_id)
                .unwrap_or("?")
                .to_owned();
            return Err(Error::table(
                new,
                format!(
                    "column `{column}` was dropped but the Iceberg table is partitioned by it \
                     ({}({column})); take it out of iceberg.partition_by and recopy the table \
                     (etl tables resync)",
                    field.transform
                ),
            ));
        }
    }
    let schema = Schema::builder()
        .with_schema_id(current.schema_id() + 1)
        .with_fields(evolved)
        .build()
        .map_err(|e| error(new, "building the new schema", e))?;
    let location = table.metadata_location().map(str::to_owned);
    let metadata = table
        .metadata()
        .clone()
        .into_builder(location)
        .add_current_schema(schema)
        .and_then(|builder| builder.build())
        .map_err(|e| error(new, "evolving the schema", e))?
        .metadata;
    catalog
        .replace_metadata(&table, metadata)
        .await
        .map_err(|e| error(new, "committing the new schema", e))
}

/// The fields of the evolved schema; `next_id` is the highest field id used so far.
fn evolve(
    current: &Schema,
    old: &TableSchema,
    new: &TableSchema,
    next_id: &mut i32,
    with_meta: bool,
) -> Result<Vec<NestedFieldRef>> {
    let diff = SchemaDiff::between(old, new);
    let mut id = || {
        *next_id += 1;
        *next_id
    };
    let mut fields = Vec::new();
    for (index, column) in new.columns.iter().enumerate() {
        if META_COLUMNS.contains(&column.name.as_str()) {
            return Err(Error::table(
                new,
                format!("column `{}` collides with etl's own column", column.name),
            ));
        }
        let wanted = Kind::of_column(column);
        let existing = diff.source_of[index]
            .and_then(|o| current.field_by_name(&old.columns[o].name))
            .cloned();
        match existing {
            Some(field) => {
                let field_type = widened(&field.field_type, &wanted).ok_or_else(|| {
                    Error::table(
                        new,
                        format!(
                            "column `{}` changed to type {}, stored as Iceberg {} which cannot \
                             become {}; recopy the table (etl tables resync)",
                            column.name,
                            crate::base::values::oid::type_name(column.type_oid),
                            field.field_type,
                            wanted.iceberg(&mut || 0),
                        ),
                    )
                })?;
                fields.push(Arc::new(NestedField {
                    name: column.name.clone(),
                    field_type: Box::new(field_type),
                    ..(*field).clone()
                }));
            }
            None => {
                let field_id = id();
                let field_type = wanted.iceberg(&mut id);
                fields.push(Arc::new(NestedField::optional(
                    field_id,
                    &column.name,
                    field_type,
                )));
            }
        }
    }
    for name in META_COLUMNS.iter().filter(|_| with_meta) {
        match current.field_by_name(name) {
            Some(field) => fields.push(field.clone()),
            None => fields.push(Arc::new(NestedField::optional(
                id(),
                name,
                super::batch::meta_type(name),
            ))),
        }
    }
    Ok(fields)
}

/// The type a field of type `stored` takes to hold `wanted`, if Iceberg allows it.
fn widened(stored: &Type, wanted: &Kind) -> Option<Type> {
    let target = wanted.iceberg(&mut || 0);
    if same_shape(stored, &target) {
        return Some(stored.clone());
    }
    use PrimitiveType as P;
    match (stored, &target) {
        (Type::Primitive(P::Int), Type::Primitive(P::Long))
        | (Type::Primitive(P::Float), Type::Primitive(P::Double)) => Some(target),
        (
            Type::Primitive(P::Decimal { precision, scale }),
            Type::Primitive(P::Decimal {
                precision: wider,
                scale: same,
            }),
        ) if wider >= precision && same == scale => Some(target),
        _ => None,
    }
}

/// Whether `a` and `b` have the same field names and types, in order (ignoring field ids).
pub fn same_fields(a: &Schema, b: &Schema) -> bool {
    let (a, b) = (a.as_struct().fields(), b.as_struct().fields());
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(a, b)| a.name == b.name && same_shape(&a.field_type, &b.field_type))
}

/// Equal types, ignoring list element ids.
fn same_shape(a: &Type, b: &Type) -> bool {
    match (a, b) {
        (Type::List(a), Type::List(b)) => {
            same_shape(&a.element_field.field_type, &b.element_field.field_type)
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::base::schema::{ColumnSchema, ReplicaIdentity, TableId, TableName};
    use crate::base::values::oid;

    fn table(columns: &[(&str, u32)]) -> TableSchema {
        TableSchema {
            id: TableId(1),
            name: TableName::new("public", "t"),
            columns: columns
                .iter()
                .map(|(name, type_oid)| ColumnSchema {
                    name: (*name).to_owned(),
                    type_oid: *type_oid,
                    type_modifier: -1,
                    nullable: true,
                    primary_key_position: None,
                    existing_rows_value: None,
                })
                .collect(),
            replica_identity: ReplicaIdentity::Default,
        }
    }

    fn names(fields: &[NestedFieldRef]) -> Vec<(i32, String)> {
        fields.iter().map(|f| (f.id, f.name.clone())).collect()
    }

    #[test]
    fn renames_keep_ids_adds_get_new_ones_and_narrowing_is_refused() {
        let old = table(&[("id", oid::INT4), ("a", oid::TEXT), ("b", oid::INT4)]);
        let current = super::super::batch::table_schema(&old, true).unwrap();
        let mut next = current.highest_field_id();
        let renamed = table(&[("id", oid::INT8), ("a2", oid::TEXT), ("c", oid::BOOL)]);
        let fields = evolve(&current, &old, &renamed, &mut next, true).unwrap();
        let got = names(&fields);
        assert_eq!(got[0], (1, "id".to_owned()));
        assert_eq!(got[1], (2, "a2".to_owned()));
        assert_eq!(got[2], (10, "c".to_owned()));
        assert_eq!(*fields[0].field_type, Type::Primitive(PrimitiveType::Long));
        let narrowed = table(&[("id", oid::INT2), ("a", oid::INT4), ("b", oid::INT4)]);
        let mut next = current.highest_field_id();
        let error = evolve(&current, &old, &narrowed, &mut next, true).unwrap_err();
        assert!(error.to_string().contains("`a`"), "{error}");
    }
}
