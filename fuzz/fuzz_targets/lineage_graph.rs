//! The API's lineage graph (`api/src/lineage/graph.rs`, compiled in here as it is, so this
//! target does not link the whole API): any run of stored events, folded into the index, then
//! any query of the Marquez-compatible reads (`/api/v1/lineage`, `/api/v1/column-lineage`, the
//! namespace lists) answers without a panic, and every graph it answers is well formed: node
//! ids sorted and unique, each node's `outEdges` starting at that node, JSON-serializable.
//!
//! Input: the first line is the query, `<nodeId>\t<depth>\t<withDownstream>`; every further
//! line is one OpenLineage event (JSON) as `POST /api/v1/lineage` stores it.

#![no_main]

#[allow(dead_code, unused_imports, missing_docs)]
#[path = "../../api/src/lineage/graph.rs"]
mod graph;

use libfuzzer_sys::fuzz_target;

/// The API refuses deeper walks (`api/src/lineage/store.rs`, `MAX_DEPTH`).
const MAX_DEPTH: u32 = 100;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.lines();
    let query = lines.next().unwrap_or_default();
    let mut fields = query.split('\t');
    let node = fields.next().unwrap_or_default();
    let depth = fields
        .next()
        .and_then(|d| d.parse::<u32>().ok())
        .unwrap_or(20)
        % (MAX_DEPTH + 1);
    let downstream = fields.next() == Some("true");

    let mut index = graph::LineageIndex::new();
    for line in lines.take(64) {
        let Ok(event) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if let Ok(summary) = graph::parse_event(&event) {
            index.add(&summary);
        }
    }
    if let Ok(lineage) = index.lineage(node, depth) {
        well_formed(&lineage);
    }
    if let Ok(lineage) = index.column_lineage(node, depth, downstream) {
        well_formed(&lineage);
    }
    let namespaces = index.namespaces();
    for ns in &namespaces.namespaces {
        let _ = index.jobs(&ns.name, 10, 0);
        let _ = index.datasets(&ns.name, 10, 0);
    }
    serde_json::to_string(&namespaces).expect("the namespace list serializes");
});

fn well_formed(lineage: &graph::Lineage) {
    let ids: Vec<&str> = lineage.graph.iter().map(|n| n.id.as_str()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "node ids sorted and unique: {ids:?}");
    for node in &lineage.graph {
        for edge in &node.out_edges {
            assert_eq!(edge.origin, node.id, "an outEdge starts at its node");
        }
    }
    serde_json::to_string(lineage).expect("a graph serializes");
}
