//! OpenLineage run events as our services read them back (the run journal, the API's store):
//! any bytes either fail to parse or give an event that serializes and parses again to the
//! same JSON; never a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_lineage::event::RunEvent;

fuzz_target!(|data: &[u8]| {
    let Ok(event) = serde_json::from_slice::<RunEvent>(data) else {
        return;
    };
    let _ = event.dataset_names().count();
    let once = serde_json::to_value(&event).expect("an event serializes");
    let again: RunEvent = serde_json::from_value(once.clone()).expect("its JSON parses again");
    assert_eq!(serde_json::to_value(&again).expect("serializes"), once);
});
