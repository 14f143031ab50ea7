//! RelationalMemory against Sonnet v1's `snt.RelationalMemory` transcribed in torch ops
//! (`scripts/fixtures/relational_memory.py`; Sonnet v1 does not install beside TF 2.21): unit,
//! memory and no gating, one and two blocks, a key size other than the head size, T = 4 steps
//! under `dynamic_rnn` from Sonnet's initial memory.

mod common;

use common::{assert_close, load_fixture};
use couplet::rnn::{dynamic_rnn, GateStyle, RelationalMemory, RelationalMemoryConfig, UnrollOptions};
use couplet::{Module, Store};

#[test]
fn relational_memory_matches_sonnets_formulas() {
    let fx = load_fixture("relational_memory");
    let cases = [
        ("unit", RelationalMemoryConfig::new(3, 4, 2).with_num_blocks(2).with_key_size(3)),
        (
            "memory",
            RelationalMemoryConfig::new(4, 1, 2)
                .with_gate_style(GateStyle::Memory)
                .with_attention_mlp_layers(3)
                .with_gate_biases(0.5, -0.5),
        ),
        ("ungated", RelationalMemoryConfig::new(2, 3, 1).with_gate_style(GateStyle::Ungated)),
    ];
    for (case, config) in cases {
        let store = Store::cpu();
        let rm = RelationalMemory::new(&store.root(), config).unwrap();
        let x = fx.get(&format!("{case}/x"));
        // The first step builds the lazy input layer; then every variable is loaded by name.
        let _ = dynamic_rnn(&rm, &x, &UnrollOptions::eval()).unwrap();
        let vars = rm.variables().unwrap();
        for v in &vars {
            let mut t = v.tensor().shallow_clone();
            tch::no_grad(|| t.copy_(&fx.get(&format!("{case}/{}", v.name()))));
        }
        let want_vars =
            fx.keys().iter().filter(|k| k.starts_with(&format!("{case}/relational_memory/"))).count();
        assert_eq!(vars.len(), want_vars, "{case}: every fixture weight is a variable");
        let (y, memory) = dynamic_rnn(&rm, &x, &UnrollOptions::eval()).unwrap();
        println!("{case}");
        assert_close(&y, &fx.get(&format!("{case}/y")), 1e-5);
        assert_close(memory.h().unwrap(), &fx.get(&format!("{case}/memory")), 1e-5);
    }
}
