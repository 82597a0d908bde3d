//! Compile-time checks that the public handles and the futures their
//! methods return can move between threads (`Send`), and that the shared
//! handles can be used from several at once (`Sync`). Nothing here runs:
//! if a bound is lost, the adapter's test binary no longer compiles.

#![allow(dead_code, clippy::all)]

use eventhubs_async::{
    BatchOptions, BufferedProducer, BufferedProducerOptions, EventData, EventDataBatch,
    EventStream, Hub, HubManager, ListenerHandle, Processor, ReceiveOptions, Runtime, SendOptions,
};
use futures_util::StreamExt;

fn send<T: Send>(_: &T) {}
fn send_sync<T: Send + Sync>(_: &T) {}

/// Every future a user awaits on a hub, a stream, a listener, a processor
/// and a hub manager is `Send`; the handles shared between tasks are
/// `Send + Sync`.
pub fn public_futures_are_send<R: Runtime>(
    hub: &Hub<R>,
    stream: &mut EventStream,
    listener: &ListenerHandle,
    processor: &Processor<R>,
    manager: &HubManager<R>,
    producer: &BufferedProducer,
    batch: EventDataBatch,
) {
    send_sync(hub);
    send(stream);
    send_sync(listener);
    send_sync(processor);
    send_sync(manager);
    send_sync(producer);
    send(&batch);

    send(&hub.send(EventData::new("x")));
    send(&hub.send_with(EventData::new("x"), SendOptions::new()));
    send(&hub.send_batch(vec![EventData::new("x")]));
    send(&hub.send_batch_with(vec![EventData::new("x")], SendOptions::new()));
    send(&hub.create_batch(BatchOptions::new()));
    send(&hub.send_event_batch(batch));
    send(&hub.runtime_information());
    send(&hub.partition_information("0"));
    send(&hub.receiver("0", ReceiveOptions::new()));
    send(&hub.receive(
        "0",
        |_| async { Ok::<(), std::io::Error>(()) },
        ReceiveOptions::new(),
    ));
    send(&hub.close());

    send(&stream.next());
    send(&listener.close());
    send(&listener.done());

    send(&processor.run());
    send(&processor.partition_ids());
    send(&processor.close());

    send(&hub.buffered_producer(BufferedProducerOptions::new()));
    send(&producer.enqueue(EventData::new("x")));
    send(&producer.flush());
    send(&producer.close());

    send(&manager.list());
    send(&manager.get("eh1"));
    send(&manager.delete("eh1"));
}

/// An `EventStream` closed by value is `Send` too.
pub fn stream_close_is_send(stream: EventStream) {
    send(&stream.close());
}
