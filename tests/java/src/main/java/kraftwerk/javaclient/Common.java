package kraftwerk.javaclient;

import java.time.Duration;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * What every scenario shares: argument parsing, a watchdog that bounds the
 * run, client configurations, and failure reporting.
 *
 * Arguments are `BOOTSTRAP [--key value]...`. A scenario prints `OK ...` and
 * exits 0, or prints `FAIL ...` and exits 1. The watchdog exits 2 when the
 * time limit passes, after dumping every thread's stack.
 */
final class Common {
    private Common() {}

    /** Raised by a check that does not hold; main turns it into exit 1. */
    static final class CheckFailed extends RuntimeException {
        private static final long serialVersionUID = 1L;

        CheckFailed(String message) {
            super(message);
        }

        CheckFailed(String message, Throwable cause) {
            super(message, cause);
        }
    }

    /** Parsed command line: the bootstrap servers and `--key value` options. */
    static final class Args {
        final String bootstrap;
        private final Map<String, String> options = new HashMap<>();

        Args(String[] argv) {
            if (argv.length < 1 || argv[0].startsWith("--")) {
                throw new IllegalArgumentException("usage: SCENARIO BOOTSTRAP [--key value]...");
            }
            bootstrap = argv[0];
            for (int i = 1; i < argv.length; i++) {
                String a = argv[i];
                if (!a.startsWith("--")) {
                    throw new IllegalArgumentException("expected --key, got " + a);
                }
                if (i + 1 >= argv.length) {
                    throw new IllegalArgumentException("no value for " + a);
                }
                options.put(a.substring(2), argv[++i]);
            }
        }

        String get(String key, String dflt) {
            return options.getOrDefault(key, dflt);
        }

        int getInt(String key, int dflt) {
            String v = options.get(key);
            return v == null ? dflt : Integer.parseInt(v);
        }

        long getLong(String key, long dflt) {
            String v = options.get(key);
            return v == null ? dflt : Long.parseLong(v);
        }

        boolean has(String key) {
            return options.containsKey(key);
        }
    }

    /** A scenario body; anything it throws fails the run. */
    interface Body {
        void run(Args args) throws Exception;
    }

    /**
     * Runs a scenario under a watchdog of `--timeout-s` seconds (default
     * `defaultTimeoutS`) and exits the JVM with its outcome.
     */
    static void main(String name, String[] argv, int defaultTimeoutS, Body body) {
        Args args;
        try {
            args = new Args(argv);
        } catch (IllegalArgumentException e) {
            System.out.println("FAIL " + name + ": " + e.getMessage());
            System.exit(64);
            return;
        }
        int timeoutS = args.getInt("timeout-s", defaultTimeoutS);
        Thread watchdog = new Thread(() -> {
            try {
                Thread.sleep(TimeUnit.SECONDS.toMillis(timeoutS));
            } catch (InterruptedException e) {
                return;
            }
            System.out.println("FAIL " + name + ": timed out after " + timeoutS + "s");
            dumpThreads();
            System.out.flush();
            Runtime.getRuntime().halt(2);
        }, "watchdog");
        watchdog.setDaemon(true);
        watchdog.start();
        long start = System.nanoTime();
        int code;
        try {
            body.run(args);
            System.out.printf("OK %s in %.1fs%n", name, (System.nanoTime() - start) / 1e9);
            code = 0;
        } catch (CheckFailed e) {
            System.out.println("FAIL " + name + ": " + e.getMessage());
            if (e.getCause() != null) {
                e.getCause().printStackTrace(System.out);
            }
            code = 1;
        } catch (Throwable e) {
            System.out.println("FAIL " + name + ": unexpected " + describe(e));
            e.printStackTrace(System.out);
            code = 1;
        }
        System.out.flush();
        // Client threads that are still closing must not hold the exit.
        Runtime.getRuntime().halt(code);
    }

    static void dumpThreads() {
        for (Map.Entry<Thread, StackTraceElement[]> e : Thread.getAllStackTraces().entrySet()) {
            System.out.println("thread " + e.getKey().getName() + ":");
            for (StackTraceElement f : e.getValue()) {
                System.out.println("    at " + f);
            }
        }
    }

    /** The exception and its causes on one line, without ExecutionException wrappers. */
    static String describe(Throwable e) {
        StringBuilder sb = new StringBuilder();
        for (Throwable t = e; t != null; t = t.getCause()) {
            if (t instanceof ExecutionException && t.getCause() != null) {
                continue;
            }
            if (sb.length() > 0) {
                sb.append(" <- caused by ");
            }
            sb.append(t.getClass().getName()).append(": ").append(t.getMessage());
        }
        return sb.toString();
    }

    static void check(boolean ok, String message) {
        if (!ok) {
            throw new CheckFailed(message);
        }
    }

    static void log(String fmt, Object... args) {
        System.out.printf("%tT.%<tL " + fmt + "%n", prepend(System.currentTimeMillis(), args));
        System.out.flush();
    }

    private static Object[] prepend(Object first, Object[] rest) {
        Object[] all = new Object[rest.length + 1];
        all[0] = first;
        System.arraycopy(rest, 0, all, 1, rest.length);
        return all;
    }

    static Properties adminProps(String bootstrap) {
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 15000);
        p.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 30000);
        return p;
    }

    /** The client's defaults (acks=all, idempotence on), string keys and values. */
    static Properties producerProps(String bootstrap) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        return p;
    }

    static Properties consumerProps(String bootstrap, String group) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return p;
    }

    /** A unique name, so reruns against one cluster do not collide. */
    static String unique(String prefix) {
        return prefix + "-" + Long.toString(System.currentTimeMillis(), 36) + "-" + (int) (Math.random() * 1000);
    }

    /**
     * Creates a topic and waits until every partition has a leader in the
     * metadata the admin client sees.
     */
    static void createTopic(Admin admin, String topic, int partitions, short rf, Map<String, String> configs)
            throws Exception {
        NewTopic nt = new NewTopic(topic, partitions, rf);
        if (configs != null) {
            nt.configs(configs);
        }
        admin.createTopics(List.of(nt)).all().get(30, TimeUnit.SECONDS);
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (true) {
            try {
                TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(10, TimeUnit.SECONDS)
                        .get(topic);
                boolean ready = d.partitions().size() == partitions;
                for (TopicPartitionInfo p : d.partitions()) {
                    ready &= p.leader() != null && p.leader().id() >= 0 && p.isr().size() == rf;
                }
                if (ready) {
                    return;
                }
            } catch (ExecutionException e) {
                // UnknownTopicOrPartition until the metadata has spread.
            }
            check(System.nanoTime() < deadline, "topic " + topic + " has no leader for every partition after 30s");
            Thread.sleep(100);
        }
    }

    /** Leader node id of every partition of a topic. */
    static Map<Integer, Integer> leaders(Admin admin, String topic) throws Exception {
        TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(15, TimeUnit.SECONDS).get(topic);
        Map<Integer, Integer> out = new HashMap<>();
        for (TopicPartitionInfo p : d.partitions()) {
            out.put(p.partition(), p.leader() == null ? -1 : p.leader().id());
        }
        return out;
    }

    static List<TopicPartition> partitions(String topic, int n) {
        List<TopicPartition> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(new TopicPartition(topic, i));
        }
        return out;
    }

    static Duration ms(long v) {
        return Duration.ofMillis(v);
    }
}
