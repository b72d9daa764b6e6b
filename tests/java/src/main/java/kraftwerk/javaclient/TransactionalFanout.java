package kraftwerk.javaclient;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

/**
 * One transactional producer writes to every partition of several topics:
 * a committed transaction, an aborted one (its records sent and flushed
 * first), then another committed one.
 *
 * Options: --topics T (3), --partitions P (6), --records N (records per
 * partition in the first transaction, 20).
 *
 * Checks: a read_committed consumer sees exactly the committed records of
 * every partition, in order; a read_uncommitted one sees the aborted
 * records too, where they were written; neither sees anything else (no
 * transaction marker surfaces as a record).
 */
public final class TransactionalFanout {
    private TransactionalFanout() {}

    public static void main(String[] argv) {
        Common.main("TransactionalFanout", argv, 300, TransactionalFanout::run);
    }

    static void run(Common.Args args) throws Exception {
        final int topics = args.getInt("topics", 3);
        final int partitions = args.getInt("partitions", 6);
        final int perPartition = args.getInt("records", 20);
        final List<String> names = new ArrayList<>();
        try (Admin admin = Admin.create(Common.adminProps(args.bootstrap))) {
            for (int t = 0; t < topics; t++) {
                String name = Common.unique("fanout-" + t);
                Common.createTopic(admin, name, partitions, (short) 1, Map.of());
                names.add(name);
            }
        }
        Map<TopicPartition, List<String>> committed = new HashMap<>();
        Map<TopicPartition, List<String>> everything = new HashMap<>();
        Properties pp = Common.producerProps(args.bootstrap);
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, Common.unique("fanout-app"));
        try (KafkaProducer<String, String> producer = new KafkaProducer<>(pp)) {
            producer.initTransactions();
            String[] phases = {"first", "aborted", "last"};
            for (String phase : phases) {
                producer.beginTransaction();
                int n = phase.equals("first") ? perPartition : 1;
                for (String topic : names) {
                    for (int p = 0; p < partitions; p++) {
                        TopicPartition tp = new TopicPartition(topic, p);
                        for (int i = 0; i < n; i++) {
                            String value = phase + "-" + i;
                            producer.send(new ProducerRecord<>(topic, p, null, value));
                            everything.computeIfAbsent(tp, k -> new ArrayList<>()).add(value);
                            if (!phase.equals("aborted")) {
                                committed.computeIfAbsent(tp, k -> new ArrayList<>()).add(value);
                            }
                        }
                    }
                }
                if (phase.equals("aborted")) {
                    producer.flush();
                    producer.abortTransaction();
                } else {
                    producer.commitTransaction();
                }
                Common.log("%s transaction ended", phase);
            }
        }
        check(args.bootstrap, names, partitions, "read_committed", committed);
        check(args.bootstrap, names, partitions, "read_uncommitted", everything);
    }

    static void check(String bootstrap, List<String> names, int partitions, String isolation,
            Map<TopicPartition, List<String>> want) {
        Properties p = Common.consumerProps(bootstrap, Common.unique("fanout-check"));
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        long total = want.values().stream().mapToLong(List::size).sum();
        Map<TopicPartition, List<String>> got = new TreeMap<>((a, b) -> a.toString().compareTo(b.toString()));
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            List<TopicPartition> all = new ArrayList<>();
            for (String t : names) {
                all.addAll(Common.partitions(t, partitions));
            }
            c.assign(all);
            c.seekToBeginning(all);
            long count = 0;
            long quietSince = System.nanoTime();
            long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(60);
            while (System.nanoTime() < deadline) {
                ConsumerRecords<String, String> records = c.poll(Duration.ofMillis(300));
                for (ConsumerRecord<String, String> r : records) {
                    got.computeIfAbsent(new TopicPartition(r.topic(), r.partition()), k -> new ArrayList<>())
                            .add(r.value());
                    count++;
                }
                if (!records.isEmpty()) {
                    quietSince = System.nanoTime();
                } else if (count >= total && System.nanoTime() - quietSince > TimeUnit.SECONDS.toNanos(2)) {
                    break;
                }
            }
        }
        for (Map.Entry<TopicPartition, List<String>> e : want.entrySet()) {
            List<String> seen = got.getOrDefault(e.getKey(), List.of());
            Common.check(seen.equals(e.getValue()),
                    isolation + " " + e.getKey() + ": got " + seen + ", want " + e.getValue());
        }
        Common.check(got.keySet().equals(want.keySet()), isolation + ": records in unexpected partitions " + got.keySet());
        Common.log("%s: exactly the expected %d records in %d partitions", isolation, total, want.size());
    }
}
