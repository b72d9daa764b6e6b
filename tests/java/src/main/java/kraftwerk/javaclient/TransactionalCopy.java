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
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;

/**
 * Exactly-once copy with the Java client, as Kafka's own transactions test
 * does it: records are written to an input topic, then a
 * consume-transform-produce loop (read_committed consumer, transactional
 * producer, offsets sent to each transaction) copies them to an output
 * topic. A failed transaction (a leader or the coordinator killed
 * meanwhile) is aborted and the consumer goes back to its committed
 * offsets, the standard recovery. Every few transactions one is aborted on
 * purpose after its records were sent.
 *
 * Options: --records N (10000), --partitions P (6), --replication R (1),
 * --min-isr M, --batch B (records per transaction, 500), --timeout-s S.
 *
 * Prints `LEADERS {partition=node,...}` for the input topic, `COPIED n`
 * after each commit and `COORDINATOR n` (the transaction coordinator) at
 * the start and every fifth commit, so that a harness can kill brokers
 * mid-run.
 *
 * Checks: the read_committed output is the input, partition by partition,
 * in order, without duplicates and without the aborted records; a
 * read_uncommitted reader sees the aborted records too; the group's
 * committed offsets are the end of the input; a second producer with the
 * same transactional.id fences the first.
 */
public final class TransactionalCopy {
    private TransactionalCopy() {}

    public static void main(String[] argv) {
        Common.main("TransactionalCopy", argv, 600, TransactionalCopy::run);
    }

    static void run(Common.Args args) throws Exception {
        final int n = args.getInt("records", 10_000);
        final int partitions = args.getInt("partitions", 6);
        final short rf = (short) args.getInt("replication", 1);
        final int batch = args.getInt("batch", 500);
        final String input = Common.unique("eos-in");
        final String output = Common.unique("eos-out");
        final String group = Common.unique("eos-group");
        final String txnId = Common.unique("eos-app");

        Map<String, String> configs = new HashMap<>();
        if (args.has("min-isr")) {
            configs.put("min.insync.replicas", args.get("min-isr", "1"));
        }
        try (Admin admin = Admin.create(Common.adminProps(args.bootstrap))) {
            Common.createTopic(admin, input, partitions, rf, configs);
            Common.createTopic(admin, output, partitions, rf, configs);
            System.out.println("LEADERS " + new TreeMap<>(Common.leaders(admin, input)));
            System.out.flush();
        }

        // The input: "i" to partition i % partitions.
        try (KafkaProducer<String, String> plain = new KafkaProducer<>(Common.producerProps(args.bootstrap))) {
            for (int i = 0; i < n; i++) {
                plain.send(new ProducerRecord<>(input, i % partitions, null, Integer.toString(i)));
            }
            plain.flush();
        }
        Common.log("input written: %d records", n);

        Properties cp = Common.consumerProps(args.bootstrap, group);
        cp.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        cp.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, batch);
        cp.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        Properties pp = Common.producerProps(args.bootstrap);
        pp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, txnId);
        pp.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 30000);

        int committedTxns = 0;
        int abortedOnPurpose = 0;
        int failedTxns = 0;
        int restarts = 0;
        long copied = 0;
        try (KafkaConsumer<String, String> consumer = new KafkaConsumer<>(cp);
                Admin admin = Admin.create(Common.adminProps(args.bootstrap))) {
            KafkaProducer<String, String> producer = new KafkaProducer<>(pp);
            producer.initTransactions();
            printCoordinator(admin, txnId);
            consumer.subscribe(List.of(input));
            while (copied < n) {
                ConsumerRecords<String, String> records = consumer.poll(Duration.ofMillis(500));
                if (records.isEmpty()) {
                    copied = committedTotal(consumer, input, partitions);
                    continue;
                }
                boolean abortThis = committedTxns > 0 && committedTxns % 7 == 3 && abortedOnPurpose < 3;
                try {
                    producer.beginTransaction();
                    Map<TopicPartition, OffsetAndMetadata> next = new HashMap<>();
                    for (ConsumerRecord<String, String> r : records) {
                        String value = abortThis ? "aborted-" + r.value() : "copy-" + r.value();
                        producer.send(new ProducerRecord<>(output, r.partition(), null, value));
                        next.put(new TopicPartition(r.topic(), r.partition()), new OffsetAndMetadata(r.offset() + 1));
                    }
                    if (abortThis) {
                        producer.flush();
                        producer.abortTransaction();
                        abortedOnPurpose++;
                        rewind(consumer);
                        continue;
                    }
                    producer.sendOffsetsToTransaction(next, consumer.groupMetadata());
                    producer.commitTransaction();
                    committedTxns++;
                    copied = committedTotal(consumer, input, partitions);
                    System.out.println("COPIED " + copied);
                    if (committedTxns % 5 == 0) {
                        printCoordinator(admin, txnId);
                    }
                    System.out.flush();
                } catch (ProducerFencedException e) {
                    throw new Common.CheckFailed("fenced without a second producer: " + Common.describe(e));
                } catch (KafkaException e) {
                    failedTxns++;
                    Common.log("transaction failed (%s); aborting and rewinding", Common.describe(e));
                    try {
                        producer.abortTransaction();
                    } catch (KafkaException again) {
                        // Kafka's recovery when the transaction cannot be
                        // aborted (a commit timed out): a new producer with
                        // the same id fences this one and ends what it left open.
                        Common.log("abort failed (%s); starting a new producer", Common.describe(again));
                        producer.close(Duration.ZERO);
                        producer = new KafkaProducer<>(pp);
                        producer.initTransactions();
                        restarts++;
                    }
                    rewind(consumer);
                }
            }
            Common.log("copied %d records in %d transactions (%d aborted on purpose, %d failed and retried, "
                    + "%d producer restarts)", copied, committedTxns, abortedOnPurpose, failedTxns, restarts);
            Common.check(abortedOnPurpose > 0, "no transaction was aborted on purpose");

            // Zombie fencing: a second producer with the same id.
            try (KafkaProducer<String, String> successor = new KafkaProducer<>(pp)) {
                successor.initTransactions();
                boolean fenced = false;
                try {
                    producer.beginTransaction();
                    producer.send(new ProducerRecord<>(output, 0, null, "zombie")).get(30, TimeUnit.SECONDS);
                    producer.commitTransaction();
                } catch (Exception e) {
                    fenced = true;
                    Common.log("the first producer is fenced: %s", Common.describe(e));
                }
                Common.check(fenced, "the first producer could still commit after a successor initialised");
            }
            producer.close(Duration.ZERO);
        }

        verify(args.bootstrap, input, output, group, partitions, n);
    }

    /** Prints `COORDINATOR n`: the broker coordinating the transactional id. */
    static void printCoordinator(Admin admin, String txnId) {
        try {
            int id = admin.describeTransactions(List.of(txnId)).description(txnId).get(15, TimeUnit.SECONDS)
                    .coordinatorId();
            System.out.println("COORDINATOR " + id);
            System.out.flush();
        } catch (Exception e) {
            Common.log("no coordinator known for %s: %s", txnId, Common.describe(e));
        }
    }

    /** The committed offsets of the group, summed (the records copied). */
    static long committedTotal(KafkaConsumer<String, String> consumer, String topic, int partitions) {
        long sum = 0;
        Map<TopicPartition, OffsetAndMetadata> c = consumer.committed(new java.util.HashSet<>(Common.partitions(topic, partitions)));
        for (OffsetAndMetadata o : c.values()) {
            if (o != null) {
                sum += o.offset();
            }
        }
        return sum;
    }

    /** Back to the committed offsets (or the start) of every assigned partition. */
    static void rewind(KafkaConsumer<String, String> consumer) {
        Map<TopicPartition, OffsetAndMetadata> committed = consumer.committed(consumer.assignment());
        for (TopicPartition tp : consumer.assignment()) {
            OffsetAndMetadata o = committed.get(tp);
            consumer.seek(tp, o == null ? 0 : o.offset());
        }
    }

    static Map<Integer, List<String>> readAll(String bootstrap, String topic, int partitions, String isolation,
            long atLeast) {
        Properties p = Common.consumerProps(bootstrap, Common.unique("eos-check"));
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        Map<Integer, List<String>> out = new TreeMap<>();
        try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
            c.assign(Common.partitions(topic, partitions));
            c.seekToBeginning(c.assignment());
            long count = 0;
            long idleSince = System.nanoTime();
            while (true) {
                ConsumerRecords<String, String> records = c.poll(Duration.ofMillis(300));
                for (ConsumerRecord<String, String> r : records) {
                    out.computeIfAbsent(r.partition(), k -> new ArrayList<>()).add(r.value());
                    count++;
                }
                if (!records.isEmpty()) {
                    idleSince = System.nanoTime();
                } else if (count >= atLeast && System.nanoTime() - idleSince > TimeUnit.SECONDS.toNanos(2)) {
                    break;
                } else if (System.nanoTime() - idleSince > TimeUnit.SECONDS.toNanos(60)) {
                    break;
                }
            }
        }
        return out;
    }

    static void verify(String bootstrap, String input, String output, String group, int partitions, int n)
            throws Exception {
        Map<Integer, List<String>> copies = readAll(bootstrap, output, partitions, "read_committed", n);
        long total = 0;
        for (int p = 0; p < partitions; p++) {
            List<String> want = new ArrayList<>();
            for (int i = p; i < n; i += partitions) {
                want.add("copy-" + i);
            }
            List<String> got = copies.getOrDefault(p, List.of());
            total += got.size();
            if (!got.equals(want)) {
                int at = 0;
                while (at < Math.min(got.size(), want.size()) && got.get(at).equals(want.get(at))) {
                    at++;
                }
                throw new Common.CheckFailed(String.format(
                        "output partition %d: %d records, want %d; first difference at %d: got %s, want %s", p,
                        got.size(), want.size(), at, at < got.size() ? got.get(at) : "nothing",
                        at < want.size() ? want.get(at) : "nothing"));
            }
        }
        Common.log("read_committed output: %d records, exactly the input in order", total);

        Map<Integer, List<String>> everything = readAll(bootstrap, output, partitions, "read_uncommitted", n);
        long aborted = everything.values().stream().flatMap(List::stream).filter(v -> v.startsWith("aborted-"))
                .count();
        Common.check(aborted > 0, "read_uncommitted sees no aborted record");
        Common.log("read_uncommitted output also holds %d aborted records", aborted);

        try (Admin admin = Admin.create(Common.adminProps(bootstrap))) {
            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (TopicPartition tp : Common.partitions(input, partitions)) {
                latest.put(tp, OffsetSpec.latest());
            }
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends = admin.listOffsets(latest).all()
                    .get(30, TimeUnit.SECONDS);
            Map<TopicPartition, OffsetAndMetadata> committed = admin.listConsumerGroupOffsets(group)
                    .partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);
            for (TopicPartition tp : latest.keySet()) {
                OffsetAndMetadata c = committed.get(tp);
                long end = ends.get(tp).offset();
                Common.check(c != null && c.offset() == end,
                        "committed offset of " + tp + " is " + (c == null ? "none" : c.offset()) + ", end is " + end);
            }
        }
        Common.log("the group's committed offsets are the end of the input");
    }
}
