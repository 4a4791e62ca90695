//! Gate throughput on one core for typical commands (criterion). Figures in BENCHMARKS.md.
//! Run: cargo bench --bench gate

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use medic::gate::{Authority, Gate, GateConfig};

fn bench(c: &mut Criterion) {
    let gate = Gate::from_config(&GateConfig::default()).expect("built-in rules load");
    let typical = [
        ("allow", "systemctl restart nginx"),
        ("allow_docker", "docker restart web-frontend"),
        ("approval", "/usr/local/lib/medic/clean_logs.sh nginx"),
        ("deny_extra_flag", "systemctl restart nginx --host=evil"),
        ("deny_chaining", "systemctl restart nginx; rm -rf /"),
        ("deny_sudo", "sudo systemctl restart nginx"),
        ("deny_unicode", "systemctl restart ngіnx"),
    ];
    let mut group = c.benchmark_group("gate_check");
    group.throughput(Throughput::Elements(1));
    for (name, command) in typical {
        group.bench_function(name, |b| b.iter(|| gate.check(black_box(command), None, Authority::Automatic)));
    }
    group.finish();

    let mut group = c.benchmark_group("gate_mix");
    group.throughput(Throughput::Elements(typical.len() as u64));
    group.bench_function("typical_mix", |b| {
        b.iter(|| {
            for (_, command) in typical {
                black_box(gate.check(black_box(command), None, Authority::Automatic));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
