package kraftwerk.javaclient;

import java.nio.file.Files;
import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.serialization.LongDeserializer;
import org.apache.kafka.common.serialization.Serdes;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.utils.Bytes;
import org.apache.kafka.streams.KafkaStreams;
import org.apache.kafka.streams.StreamsBuilder;
import org.apache.kafka.streams.StreamsConfig;
import org.apache.kafka.streams.kstream.Grouped;
import org.apache.kafka.streams.kstream.Materialized;
import org.apache.kafka.streams.kstream.Produced;
import org.apache.kafka.streams.state.KeyValueStore;
import org.apache.kafka.streams.state.Stores;

/**
 * A Kafka Streams word count with `processing.guarantee=exactly_once_v2`:
 * lines go to an input topic while the application counts words (through
 * a repartition topic and a changelogged store) into an output topic.
 * Caching is off, so every input word makes exactly one count update.
 *
 * Options: --lines N (4000), --partitions P (3), --replication R (1),
 * --rate R (lines per second, 400), --timeout-s S.
 *
 * Prints `LINES n` every 500 lines written, so that a harness can kill
 * and restart a broker mid-run.
 *
 * Checks, on the output read with read_committed: each word's counts are
 * exactly 1, 2, 3, ... up to its number of occurrences in the input, in
 * order: no update lost, none doubled by a retried transaction.
 */
public final class StreamsWordCount {
    private StreamsWordCount() {}

    static final String[] WORDS = {"kafka", "kraftwerk", "topico", "particao", "broker", "lider", "replica",
        "consumidor", "produtor", "grupo", "offset", "transacao"};

    public static void main(String[] argv) {
        Common.main("StreamsWordCount", argv, 600, StreamsWordCount::run);
    }

    static String line(int i) {
        StringBuilder sb = new StringBuilder();
        for (int w = 0; w < 1 + i % 4; w++) {
            if (w > 0) {
                sb.append(' ');
            }
            sb.append(WORDS[(i * 7 + w * 5) % WORDS.length]);
        }
        return sb.toString();
    }

    static void run(Common.Args args) throws Exception {
        final int lines = args.getInt("lines", 4000);
        final int partitions = args.getInt("partitions", 3);
        final short rf = (short) args.getInt("replication", 1);
        final int rate = args.getInt("rate", 400);
        final String input = Common.unique("wc-in");
        final String output = Common.unique("wc-out");
        final String app = Common.unique("wc-app");
        try (Admin admin = Admin.create(Common.adminProps(args.bootstrap))) {
            Common.createTopic(admin, input, partitions, rf, Map.of());
            Common.createTopic(admin, output, partitions, rf, Map.of());
        }

        Map<String, Long> expected = new TreeMap<>();
        for (int i = 0; i < lines; i++) {
            for (String w : line(i).split(" ")) {
                expected.merge(w, 1L, Long::sum);
            }
        }

        StreamsBuilder builder = new StreamsBuilder();
        builder.<String, String>stream(input)
                .flatMapValues(v -> List.of(v.split(" ")))
                .groupBy((k, w) -> w, Grouped.with(Serdes.String(), Serdes.String()))
                .count(Materialized.<String, Long>as(Stores.inMemoryKeyValueStore("counts"))
                        .withKeySerde(Serdes.String()).withValueSerde(Serdes.Long()))
                .toStream()
                .to(output, Produced.with(Serdes.String(), Serdes.Long()));
        Properties sp = new Properties();
        sp.put(StreamsConfig.APPLICATION_ID_CONFIG, app);
        sp.put(StreamsConfig.BOOTSTRAP_SERVERS_CONFIG, args.bootstrap);
        sp.put(StreamsConfig.PROCESSING_GUARANTEE_CONFIG, StreamsConfig.EXACTLY_ONCE_V2);
        sp.put(StreamsConfig.REPLICATION_FACTOR_CONFIG, (int) rf);
        sp.put(StreamsConfig.STATESTORE_CACHE_MAX_BYTES_CONFIG, 0);
        sp.put(StreamsConfig.COMMIT_INTERVAL_MS_CONFIG, 200);
        sp.put(StreamsConfig.DEFAULT_KEY_SERDE_CLASS_CONFIG, Serdes.String().getClass());
        sp.put(StreamsConfig.DEFAULT_VALUE_SERDE_CLASS_CONFIG, Serdes.String().getClass());
        sp.put(StreamsConfig.STATE_DIR_CONFIG, Files.createTempDirectory("kraftwerk-streams").toString());
        sp.put(StreamsConfig.consumerPrefix(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG), "earliest");
        AtomicReference<Throwable> failure = new AtomicReference<>();
        KafkaStreams streams = new KafkaStreams(builder.build(), sp);
        streams.setUncaughtExceptionHandler(e -> {
            Common.log("stream thread failed: %s; replacing it", Common.describe(e));
            failure.compareAndSet(null, e);
            return org.apache.kafka.streams.errors.StreamsUncaughtExceptionHandler.StreamThreadExceptionResponse
                    .REPLACE_THREAD;
        });
        streams.start();
        try {
            try (KafkaProducer<String, String> producer = new KafkaProducer<>(Common.producerProps(args.bootstrap))) {
                long start = System.nanoTime();
                for (int i = 0; i < lines; i++) {
                    producer.send(new ProducerRecord<>(input, Integer.toString(i), line(i)));
                    if ((i + 1) % 500 == 0) {
                        producer.flush();
                        System.out.println("LINES " + (i + 1));
                        System.out.flush();
                    }
                    if (rate > 0) {
                        long due = start + (long) ((i + 1) * 1e9 / rate);
                        long wait = due - System.nanoTime();
                        if (wait > 0) {
                            TimeUnit.NANOSECONDS.sleep(wait);
                        }
                    }
                }
                producer.flush();
            }
            Common.log("input written: %d lines, %d words", lines,
                    expected.values().stream().mapToLong(Long::longValue).sum());
            verify(args.bootstrap, output, partitions, expected);
        } finally {
            streams.close(Duration.ofSeconds(30));
        }
        if (failure.get() != null) {
            Common.log("a stream thread failed during the run and was replaced (allowed): %s",
                    Common.describe(failure.get()));
        }
    }

    static void verify(String bootstrap, String output, int partitions, Map<String, Long> expected)
            throws Exception {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, Common.unique("wc-check"));
        p.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, "read_committed");
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, false);
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, LongDeserializer.class.getName());
        Map<String, List<Long>> updates = new HashMap<>();
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(240);
        try (KafkaConsumer<String, Long> c = new KafkaConsumer<>(p)) {
            c.assign(Common.partitions(output, partitions));
            c.seekToBeginning(c.assignment());
            while (true) {
                ConsumerRecords<String, Long> records = c.poll(Duration.ofMillis(500));
                for (ConsumerRecord<String, Long> r : records) {
                    updates.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
                }
                boolean done = true;
                for (Map.Entry<String, Long> e : expected.entrySet()) {
                    List<Long> u = updates.get(e.getKey());
                    done &= u != null && !u.isEmpty() && u.get(u.size() - 1) >= e.getValue();
                }
                if (done) {
                    break;
                }
                if (System.nanoTime() > deadline) {
                    Map<String, Long> latest = new TreeMap<>();
                    updates.forEach((k, v) -> latest.put(k, v.get(v.size() - 1)));
                    throw new Common.CheckFailed("counts not complete after 240 s: " + latest + ", want " + expected);
                }
            }
            // Anything late (a duplicate would come after the last count).
            ConsumerRecords<String, Long> late = c.poll(Duration.ofSeconds(3));
            for (ConsumerRecord<String, Long> r : late) {
                updates.computeIfAbsent(r.key(), k -> new ArrayList<>()).add(r.value());
            }
        }
        for (Map.Entry<String, Long> e : expected.entrySet()) {
            List<Long> u = updates.get(e.getKey());
            for (int i = 0; i < u.size(); i++) {
                if (u.get(i) != i + 1) {
                    throw new Common.CheckFailed(String.format(
                            "word %s: update %d is %d, want %d (%d updates, want %d)", e.getKey(), i, u.get(i), i + 1,
                            u.size(), e.getValue()));
                }
            }
            Common.check(u.size() == e.getValue(),
                    "word " + e.getKey() + ": " + u.size() + " updates, want " + e.getValue());
        }
        Common.log("every word counted exactly once: %s", expected);
    }
}
