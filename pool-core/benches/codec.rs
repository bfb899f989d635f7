//! Wire codec throughput (MB/s of message bytes) for the hot messages:
//! a HANDLE_RESOLUTION_RESPONSE with 10 PEs (every PU lookup), a
//! REGISTRATION (every PE re-registration) and an ENRP HANDLE_UPDATE
//! (mirrored to every peer registrar per registration).
//!
//! Run: `cargo bench -p pool-core --bench codec`
//! (quick: append `-- --warm-up-time 1 --measurement-time 2`).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pool_core::types::{Policy, PoolHandle, Transport, TransportProtocol, TransportUse};
use pool_core::wire::asap::AsapMessage;
use pool_core::wire::enrp::{EnrpBody, EnrpMessage, UpdateAction};
use pool_core::wire::{PoolElement, RegistrationAuth, SelectionPolicy};

fn element(id: u32) -> PoolElement {
    PoolElement {
        id,
        home_registrar: 0x5151_0001,
        registration_life: 30_000,
        user_transport: Transport {
            protocol: TransportProtocol::Tcp,
            port: 8000,
            transport_use: TransportUse::DataOnly,
            addresses: vec![IpAddr::V4(Ipv4Addr::new(10, 0, (id >> 8) as u8, id as u8))],
        },
        policy: SelectionPolicy::Known(Policy::LeastUsed { load: id << 20 }),
        asap_transport: Some(Transport {
            protocol: TransportProtocol::Sctp,
            port: 3863,
            transport_use: TransportUse::DataPlusControl,
            addresses: vec![
                IpAddr::V4(Ipv4Addr::new(10, 0, (id >> 8) as u8, id as u8)),
                IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, id as u16)),
            ],
        }),
    }
}

fn handle() -> PoolHandle {
    PoolHandle::new(b"EchoPool".to_vec()).unwrap()
}

fn bench_asap(c: &mut Criterion, name: &str, msg: AsapMessage) {
    let bytes = msg.to_bytes().unwrap();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    let mut buf = Vec::with_capacity(bytes.len());
    g.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&msg).encode(&mut buf).unwrap();
            black_box(buf.len())
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| AsapMessage::decode(black_box(&bytes)).unwrap())
    });
    g.finish();
}

fn codec(c: &mut Criterion) {
    bench_asap(
        c,
        "asap_handle_resolution_response_10pe",
        AsapMessage::HandleResolutionResponse {
            accept_updates: false,
            pool_handle: handle(),
            policy: None,
            // PEs in a resolution response carry no ASAP transport.
            elements: (1..=10)
                .map(|i| PoolElement {
                    asap_transport: None,
                    ..element(i)
                })
                .collect(),
            error: None,
        },
    );
    bench_asap(
        c,
        "asap_registration",
        AsapMessage::Registration {
            pool_handle: handle(),
            element: element(1),
            auth: Some(RegistrationAuth {
                key_id: 1,
                nonce: 7,
                timestamp_ms: 1_700_000_000_000,
                tag: [0x5a; 32],
            }),
        },
    );

    let update = EnrpMessage {
        sender: 0x5151_0001,
        receiver: 0x5151_0002,
        body: EnrpBody::HandleUpdate {
            action: UpdateAction::AddPe,
            pool_handle: handle(),
            element: element(1),
        },
    };
    let bytes = update.to_bytes().unwrap();
    let mut g = c.benchmark_group("enrp_handle_update");
    g.throughput(Throughput::Bytes(bytes.len() as u64));
    let mut buf = Vec::with_capacity(bytes.len());
    g.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            black_box(&update).encode(&mut buf).unwrap();
            black_box(buf.len())
        })
    });
    g.bench_function("decode", |b| {
        b.iter(|| EnrpMessage::decode(black_box(&bytes)).unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
