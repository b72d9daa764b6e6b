package kraftwerk.javaclient;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

/**
 * An idempotent producer with the client's defaults writes keyed records to a
 * new topic while one consumer in a group reads them; then every record is
 * checked.
 *
 * Options: --records N (10000), --partitions P (6), --replication R (1),
 * --min-isr M (topic min.insync.replicas, unset by default), --rate R
 * (records per second, 0 = as fast as possible), --keys K (100),
 * --group-protocol classic|consumer (unset: the client's default),
 * --drain-s S (how long the consumer may take after the last ack, 60),
 * --timeout-s S (watchdog, 300).
 *
 * Prints `LEADERS {partition=node,...}` once the topic is ready and
 * `ACKED n` every 500 acknowledged records, so that a harness can kill a
 * partition leader mid-run.
 *
 * Checks: every send acknowledged; every acknowledged record consumed at
 * the partition and offset it was acknowledged at; no record stored twice;
 * the records of each key in send order in one partition; offsets consumed
 * in increasing order; the group's committed offsets equal the log end.
 */
public final class ProduceConsume {
    private ProduceConsume() {}

    /** Where a record sits in the log. */
    record Pos(int partition, long offset) {}

    public static void main(String[] argv) {
        Common.main("ProduceConsume", argv, 300, ProduceConsume::run);
    }

    static void run(Common.Args args) throws Exception {
        final int n = args.getInt("records", 10_000);
        final int partitions = args.getInt("partitions", 6);
        final short rf = (short) args.getInt("replication", 1);
        final int rate = args.getInt("rate", 0);
        final int keys = args.getInt("keys", 100);
        final String groupProtocol = args.get("group-protocol", null);
        final long drainS = args.getLong("drain-s", 60);
        final String topic = Common.unique("pc");
        final String group = Common.unique("pc-group");

        try (Admin admin = Admin.create(Common.adminProps(args.bootstrap))) {
            Map<String, String> configs = new HashMap<>();
            if (args.has("min-isr")) {
                configs.put("min.insync.replicas", args.get("min-isr", "1"));
            }
            Common.createTopic(admin, topic, partitions, rf, configs);
            Common.log("topic %s created: %d partitions, replication %d, configs %s", topic, partitions, rf, configs);
            System.out.println("LEADERS " + new TreeMap<>(Common.leaders(admin, topic)));
            System.out.flush();

            // Consumer: runs from the start, so it lives through whatever
            // happens to the cluster while the producer writes.
            Map<Integer, Pos> consumed = new ConcurrentHashMap<>();
            List<String> consumerProblems = java.util.Collections.synchronizedList(new ArrayList<>());
            AtomicInteger redelivered = new AtomicInteger();
            AtomicInteger consumedTotal = new AtomicInteger();
            AtomicBoolean stop = new AtomicBoolean();
            AtomicReference<Throwable> consumerError = new AtomicReference<>();
            Map<TopicPartition, OffsetAndMetadata> committedAtEnd = new ConcurrentHashMap<>();
            Properties cp = Common.consumerProps(args.bootstrap, group);
            if (groupProtocol != null) {
                cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, groupProtocol);
            }
            Thread consumerThread = new Thread(() -> {
                Map<Integer, Long> lastOffset = new HashMap<>();
                Map<String, Integer> lastSeqOfKey = new HashMap<>();
                try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp)) {
                    consumer.subscribe(List.of(topic));
                    while (!stop.get()) {
                        ConsumerRecords<String, String> recs = consumer.poll(Common.ms(200));
                        for (ConsumerRecord<String, String> r : recs) {
                            consumedTotal.incrementAndGet();
                            int seq = Integer.parseInt(r.value().substring(r.value().indexOf('=') + 1));
                            Pos here = new Pos(r.partition(), r.offset());
                            Long last = lastOffset.get(r.partition());
                            if (last != null && r.offset() <= last) {
                                // Read again (a rewind after a rebalance or a reset).
                                redelivered.incrementAndGet();
                            } else {
                                lastOffset.put(r.partition(), r.offset());
                                Integer prevSeq = lastSeqOfKey.put(r.key(), seq);
                                if (prevSeq != null && prevSeq >= seq) {
                                    consumerProblems.add("key " + r.key() + ": seq " + seq + " at " + here
                                            + " after seq " + prevSeq);
                                }
                            }
                            Pos before = consumed.putIfAbsent(seq, here);
                            if (before != null && !before.equals(here)) {
                                consumerProblems.add("seq " + seq + " stored twice: at " + before + " and " + here);
                            }
                        }
                    }
                    consumer.commitSync(Common.ms(30_000));
                    committedAtEnd.putAll(consumer.committed(consumer.assignment(), Common.ms(30_000)));
                } catch (Throwable t) {
                    consumerError.set(t);
                }
            }, "consumer");
            consumerThread.start();

            // Producer: the client's defaults (acks=all, idempotence on).
            Map<Integer, Pos> acked = new ConcurrentHashMap<>();
            Map<Integer, String> sendErrors = new ConcurrentHashMap<>();
            AtomicInteger ackCount = new AtomicInteger();
            long t0 = System.nanoTime();
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(Common.producerProps(args.bootstrap))) {
                for (int i = 0; i < n; i++) {
                    if (rate > 0) {
                        long due = t0 + (long) i * 1_000_000_000L / rate;
                        long wait = due - System.nanoTime();
                        if (wait > 0) {
                            TimeUnit.NANOSECONDS.sleep(wait);
                        }
                    }
                    final int seq = i;
                    producer.send(new ProducerRecord<>(topic, "key-" + (i % keys), "seq=" + i), (md, err) -> {
                        if (err != null) {
                            sendErrors.put(seq, Common.describe(err));
                        } else {
                            acked.put(seq, new Pos(md.partition(), md.offset()));
                            int c = ackCount.incrementAndGet();
                            if (c % 500 == 0) {
                                System.out.println("ACKED " + c);
                                System.out.flush();
                            }
                        }
                    });
                }
                producer.flush();
            }
            Common.log("producer done: %d acknowledged, %d failed, %.1fs", acked.size(), sendErrors.size(),
                    (System.nanoTime() - t0) / 1e9);
            if (!sendErrors.isEmpty()) {
                Common.log("first send errors: %s", firstFew(new TreeMap<>(sendErrors)));
            }

            // Wait until the consumer has seen every acknowledged record.
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(drainS);
            while (consumerThread.isAlive() && System.nanoTime() < deadline
                    && !consumed.keySet().containsAll(acked.keySet())) {
                Thread.sleep(100);
            }
            stop.set(true);
            consumerThread.join(TimeUnit.SECONDS.toMillis(60));
            Common.log("consumer done: %d distinct records, %d deliveries, %d read again", consumed.size(),
                    consumedTotal.get(), redelivered.get());

            // The log end, for the committed offsets.
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (TopicPartition tp : Common.partitions(topic, partitions)) {
                latest.put(tp, OffsetSpec.latest());
            }
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends =
                    admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS);
            Map<TopicPartition, OffsetAndMetadata> groupOffsets =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);

            List<String> problems = new ArrayList<>();
            if (consumerThread.isAlive()) {
                problems.add("consumer thread did not stop");
            }
            if (consumerError.get() != null) {
                problems.add("consumer failed: " + Common.describe(consumerError.get()));
                consumerError.get().printStackTrace(System.out);
            }
            if (!sendErrors.isEmpty()) {
                problems.add(sendErrors.size() + " sends failed, e.g. " + firstFew(new TreeMap<>(sendErrors)));
            }
            List<Integer> lost = new ArrayList<>();
            List<String> moved = new ArrayList<>();
            for (Map.Entry<Integer, Pos> e : acked.entrySet()) {
                Pos got = consumed.get(e.getKey());
                if (got == null) {
                    lost.add(e.getKey());
                } else if (!got.equals(e.getValue())) {
                    moved.add("seq " + e.getKey() + " acked at " + e.getValue() + " read at " + got);
                }
            }
            java.util.Collections.sort(lost);
            if (!lost.isEmpty()) {
                problems.add(lost.size() + " acknowledged records never consumed, e.g. seqs "
                        + lost.subList(0, Math.min(10, lost.size())));
            }
            if (!moved.isEmpty()) {
                problems.add(moved.size() + " records read at another offset than acknowledged, e.g. "
                        + moved.subList(0, Math.min(5, moved.size())));
            }
            for (Integer seq : consumed.keySet()) {
                if (seq < 0 || seq >= n) {
                    problems.add("consumed a record this run never sent: seq " + seq);
                    break;
                }
            }
            if (!consumerProblems.isEmpty()) {
                problems.add(consumerProblems.size() + " order/duplicate problems, e.g. "
                        + consumerProblems.subList(0, Math.min(5, consumerProblems.size())));
            }
            Map<String, Integer> partitionOfKey = new HashMap<>();
            for (Map.Entry<Integer, Pos> e : consumed.entrySet()) {
                String key = "key-" + (e.getKey() % keys);
                Integer p = partitionOfKey.putIfAbsent(key, e.getValue().partition());
                if (p != null && p != e.getValue().partition()) {
                    problems.add(key + " found in partitions " + p + " and " + e.getValue().partition());
                    break;
                }
            }
            long logEndSum = 0;
            for (Map.Entry<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> e : ends.entrySet()) {
                logEndSum += e.getValue().offset();
                OffsetAndMetadata c = groupOffsets.get(e.getKey());
                if (e.getValue().offset() > 0 && (c == null || c.offset() != e.getValue().offset())) {
                    problems.add("committed offset of " + e.getKey() + " is " + (c == null ? "none" : c.offset())
                            + ", log end " + e.getValue().offset());
                }
            }
            if (logEndSum != consumed.size()) {
                problems.add("the log holds " + logEndSum + " records, " + consumed.size() + " distinct consumed");
            }
            Common.log("log end offsets %s", summarize(ends));
            if (!problems.isEmpty()) {
                throw new Common.CheckFailed(String.join("; ", problems));
            }
            Common.log("%d records acknowledged and consumed once each, in order; committed = log end", n);
        }
    }

    static <K, V> String firstFew(TreeMap<K, V> m) {
        StringBuilder sb = new StringBuilder();
        int i = 0;
        for (Map.Entry<K, V> e : m.entrySet()) {
            if (i++ == 3) {
                break;
            }
            sb.append(e.getKey()).append(": ").append(e.getValue()).append(" | ");
        }
        return sb.toString();
    }

    static String summarize(Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends) {
        TreeMap<Integer, Long> out = new TreeMap<>();
        ends.forEach((tp, info) -> out.put(tp.partition(), info.offset()));
        return out.toString();
    }
}
