//! Unit tests of [`Router`]: transaction boundaries, rules, ordinals, reshapes.

use super::*;
use crate::engine::test_messages::*;

/// Applies every table.
struct All;

impl Rule for All {
    fn applies(&self, _table: TableId, _commit_lsn: Lsn) -> bool {
        true
    }
}

fn change(routed: Routed) -> Applied {
    match routed {
        Routed::Change(applied) => applied,
        other => panic!("expected a change, got {other:?}"),
    }
}

#[test]
fn changes_outside_a_transaction_are_ignored_and_boundaries_are_reported() {
    let mut router = Router::default();
    router
        .route(Lsn(1), relation(1, "a", &[("id", true)]), &All)
        .unwrap();
    assert!(matches!(
        router.route(Lsn(2), insert(1, &["1"]), &All).unwrap(),
        Routed::Nothing
    ));
    assert!(matches!(
        router.route(Lsn(3), begin(10, 7), &All).unwrap(),
        Routed::Begin { final_lsn: Lsn(10) }
    ));
    assert!(router.in_transaction());
    let applied = change(router.route(Lsn(4), insert(1, &["1"]), &All).unwrap());
    assert_eq!(applied.event.position(), (Lsn(10), 0));
    assert_eq!(applied.event.xid, 7);
    assert!(applied.bytes > 0);
    assert!(matches!(
        router.route(Lsn(5), commit(10, 11), &All).unwrap(),
        Routed::Commit { end_lsn: Lsn(11) }
    ));
    assert!(!router.in_transaction());
}

#[test]
fn a_first_change_asks_for_the_table_then_not_again() {
    let mut router = Router::default();
    router
        .route(Lsn(1), relation(1, "a", &[("id", true)]), &All)
        .unwrap();
    router.route(Lsn(2), begin(10, 1), &All).unwrap();
    let first = change(router.route(Lsn(3), insert(1, &["1"]), &All).unwrap());
    let reshape = first.reshape.expect("the destination has no shape yet");
    assert!(reshape.old.is_none());
    router.reshaped(&reshape);
    let second = change(router.route(Lsn(4), insert(1, &["2"]), &All).unwrap());
    assert!(second.reshape.is_none());
}

#[test]
fn a_changed_relation_mid_stream_asks_for_an_alter_before_its_next_change() {
    let known = Arc::new(changes::relation_schema(1, "public", "a", b'd', &[], None));
    let mut router = Router::new([(TableId(1), known)]);
    router
        .route(Lsn(1), relation(1, "a", &[("id", true)]), &All)
        .unwrap();
    router.route(Lsn(2), begin(10, 1), &All).unwrap();
    let applied = change(router.route(Lsn(3), insert(1, &["1"]), &All).unwrap());
    let reshape = applied.reshape.expect("columns differ");
    assert_eq!(reshape.old.as_ref().map(|s| s.columns.len()), Some(0));
    assert_eq!(reshape.new.columns.len(), 1);
    router.reshaped(&reshape);
    assert_eq!(router.shape(TableId(1)).map(|s| s.columns.len()), Some(1));
    // The same shape described again is a refresh (nullability is not in the message), once.
    router
        .route(Lsn(4), relation(1, "a", &[("id", true)]), &All)
        .unwrap();
    let again = change(router.route(Lsn(5), insert(1, &["2"]), &All).unwrap());
    let refresh = again.reshape.expect("described again");
    assert!(refresh.is_refresh());
    router.reshaped(&refresh);
    let then = change(router.route(Lsn(6), insert(1, &["3"]), &All).unwrap());
    assert!(then.reshape.is_none());
}

#[test]
fn skipped_tables_keep_their_place_in_the_order() {
    let mut router = Router::default();
    router
        .route(Lsn(1), relation(1, "a", &[("id", true)]), &All)
        .unwrap();
    router
        .route(Lsn(1), relation(2, "b", &[("id", true)]), &All)
        .unwrap();
    let only_b = OnlyTable(TableId(2));
    router.route(Lsn(2), begin(10, 1), &only_b).unwrap();
    assert!(matches!(
        router.route(Lsn(3), insert(1, &["1"]), &only_b).unwrap(),
        Routed::Nothing
    ));
    let applied = change(router.route(Lsn(4), insert(2, &["1"]), &only_b).unwrap());
    assert_eq!(
        applied.event.ordinal, 1,
        "the skipped change took ordinal 0"
    );
    let Routed::Truncate(events) = router.route(Lsn(5), truncate(&[1, 2]), &only_b).unwrap() else {
        panic!("expected a truncate")
    };
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.table.id, TableId(2));
    assert_eq!(events[0].event.ordinal, 3);
}

#[test]
fn a_change_of_an_undescribed_relation_is_an_error_naming_it() {
    let mut router = Router::default();
    router.route(Lsn(2), begin(10, 1), &All).unwrap();
    let error = router.route(Lsn(3), insert(5, &["1"]), &All).unwrap_err();
    assert!(error.to_string().contains("relation 5"), "{error}");
    // A new session forgets the open transaction.
    router.new_session();
    assert!(!router.in_transaction());
}
