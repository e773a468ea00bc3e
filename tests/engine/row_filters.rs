//! Publication row filters (`WHERE`) and column lists (PostgreSQL 15+), copy and stream: only
//! matching rows and listed columns reach the destination; an update that moves a row out of
//! the filter arrives as a delete, one that moves it in as an insert.

use etl::base::event::Row;

use crate::feature_destinations::read_until;
use crate::helpers::{Source, dest_rows, public};
use crate::versions::requires;

const PUBLISHED: &[&str] = &["id", "region", "amount"];

async fn published_rows(source: &Source) -> Vec<Row> {
    source
        .rows("orders where region = 'eu'", PUBLISHED, "id")
        .await
}

#[tokio::test]
async fn a_row_filter_and_column_list_limit_copy_and_stream_and_updates_cross_the_filter() {
    let source = Source::create("row_filter", "pub_filter").await;
    let test = "a_row_filter_and_column_list_limit_copy_and_stream_and_updates_cross_the_filter";
    if !requires(
        &source,
        15,
        test,
        "publication row filters and column lists",
    )
    .await
    {
        source.drop().await;
        return;
    }
    source
        .exec(
            "create table orders (id int, region text, amount int, secret text,
                 primary key (id, region));
             insert into orders select g, (array['eu', 'us'])[1 + g % 2], g, 'hidden ' || g
                 from generate_series(1, 1000) g;
             create publication pub_filter for table orders (id, region, amount)
                 where (region = 'eu')",
        )
        .await;
    let (dest, running) = source.start_ready(1).await;
    let schema = dest
        .schema(&public("orders"))
        .expect("the table is replicated");
    let names: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, PUBLISHED, "only the listed columns");
    let expected = published_rows(&source).await;
    assert_eq!(expected.len(), 500);
    let copied = read_until(
        "the copy of the matching rows",
        || async { dest_rows(&dest, "public", "orders") },
        |rows| rows.len() == expected.len(),
    )
    .await;
    assert_eq!(copied, expected);

    source
        .exec(
            "update orders set region = 'us' where id = 2;      -- leaves the filter
             update orders set region = 'eu' where id = 1;      -- enters it
             update orders set amount = -4 where id = 4;        -- stays in
             update orders set secret = 'x' where id = 6;       -- an unlisted column
             update orders set amount = -3 where id = 3;        -- stays out
             insert into orders values (2001, 'us', 1, 's'), (2002, 'eu', 2, 's');
             delete from orders where id in (8, 9);",
        )
        .await;
    let expected = published_rows(&source).await;
    let streamed = read_until(
        "the streamed changes",
        || async { dest_rows(&dest, "public", "orders") },
        |rows| rows == expected.as_slice(),
    )
    .await;
    assert_eq!(streamed, expected);
    running.stop().await;
    source.drop().await;
}
