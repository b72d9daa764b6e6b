package kraftwerk.javaclient;

import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.TreeMap;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;
import java.util.function.BooleanSupplier;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.CooperativeStickyAssignor;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.consumer.RangeAssignor;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;

/**
 * Three consumers of one group join one after another and then leave one
 * after another while a producer keeps writing.
 *
 * Options: --assignor cooperative-sticky|range (cooperative-sticky),
 * --partitions P (6), --replication R (1), --rate R (records/s, 300),
 * --settle-s S (longest wait for each rebalance to settle, 45),
 * --dwell-s S (how long the group stays in each settled state, 2),
 * --group-protocol classic (unset: the client's default), --timeout-s (240).
 *
 * Checks: after every join and leave the partitions are split among the
 * live members with none assigned twice; every acknowledged record is
 * consumed at least once; the group's committed offsets end at the log end;
 * with cooperative-sticky, a member that stays never has all its partitions
 * revoked at once.
 */
public final class GroupRebalance {
    private GroupRebalance() {}

    public static void main(String[] argv) {
        Common.main("GroupRebalance", argv, 240, GroupRebalance::run);
    }

    /** One consumer in its own thread. */
    static final class Member {
        final String name;
        final Set<TopicPartition> owned = ConcurrentHashMap.newKeySet();
        final AtomicInteger wholeRevokes = new AtomicInteger();
        final AtomicInteger rebalances = new AtomicInteger();
        final AtomicBoolean stop = new AtomicBoolean();
        final AtomicBoolean closing = new AtomicBoolean();
        final AtomicReference<Throwable> error = new AtomicReference<>();
        final Thread thread;

        Member(String name, Properties props, String topic, Set<String> consumed, AtomicInteger deliveries) {
            this.name = name;
            this.thread = new Thread(() -> {
                try (KafkaConsumer<String, String> c = new KafkaConsumer<>(props)) {
                    c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                        @Override
                        public void onPartitionsRevoked(Collection<TopicPartition> revoked) {
                            if (!revoked.isEmpty() && !closing.get() && revoked.containsAll(owned)) {
                                wholeRevokes.incrementAndGet();
                            }
                            owned.removeAll(revoked);
                            Common.log("%s revoked %s", Member.this.name, names(revoked));
                        }

                        @Override
                        public void onPartitionsAssigned(Collection<TopicPartition> assigned) {
                            rebalances.incrementAndGet();
                            owned.addAll(assigned);
                            Common.log("%s assigned %s, owns %s", Member.this.name, names(assigned), names(owned));
                        }

                        @Override
                        public void onPartitionsLost(Collection<TopicPartition> lost) {
                            owned.removeAll(lost);
                            Common.log("%s LOST %s", Member.this.name, names(lost));
                        }
                    });
                    while (!stop.get()) {
                        for (ConsumerRecord<String, String> r : c.poll(Common.ms(200))) {
                            consumed.add(r.partition() + "@" + r.offset());
                            deliveries.incrementAndGet();
                        }
                    }
                    closing.set(true);
                    // close() commits the consumed positions (auto commit is on) and leaves the group.
                } catch (Throwable t) {
                    error.set(t);
                    Common.log("%s failed: %s", name, Common.describe(t));
                }
            }, name);
        }
    }

    static String names(Collection<TopicPartition> tps) {
        List<Integer> ps = new ArrayList<>();
        for (TopicPartition tp : tps) {
            ps.add(tp.partition());
        }
        Collections.sort(ps);
        return ps.toString();
    }

    static void run(Common.Args args) throws Exception {
        final String assignor = args.get("assignor", "cooperative-sticky");
        final int partitions = args.getInt("partitions", 6);
        final short rf = (short) args.getInt("replication", 1);
        final int rate = args.getInt("rate", 300);
        final long settleS = args.getLong("settle-s", 45);
        final long dwellS = args.getLong("dwell-s", 2);
        final String topic = Common.unique("rb");
        final String group = Common.unique("rb-group");
        final String assignorClass;
        switch (assignor) {
            case "cooperative-sticky":
                assignorClass = CooperativeStickyAssignor.class.getName();
                break;
            case "range":
                assignorClass = RangeAssignor.class.getName();
                break;
            default:
                throw new IllegalArgumentException("unknown assignor " + assignor);
        }

        try (Admin admin = Admin.create(Common.adminProps(args.bootstrap))) {
            Common.createTopic(admin, topic, partitions, rf, null);
            Common.log("topic %s: %d partitions; group %s with %s", topic, partitions, group, assignor);

            // Producer thread: writes at a steady rate until told to stop.
            Set<String> acked = ConcurrentHashMap.newKeySet();
            Map<Integer, String> sendErrors = new ConcurrentHashMap<>();
            AtomicBoolean stopProducer = new AtomicBoolean();
            AtomicReference<Throwable> producerError = new AtomicReference<>();
            Thread producerThread = new Thread(() -> {
                try (KafkaProducer<String, String> p = new KafkaProducer<>(Common.producerProps(args.bootstrap))) {
                    long t0 = System.nanoTime();
                    for (int i = 0; !stopProducer.get(); i++) {
                        long wait = t0 + (long) i * 1_000_000_000L / rate - System.nanoTime();
                        if (wait > 0) {
                            TimeUnit.NANOSECONDS.sleep(wait);
                        }
                        final int seq = i;
                        p.send(new ProducerRecord<>(topic, "key-" + (i % 50), "seq=" + i), (md, err) -> {
                            if (err != null) {
                                sendErrors.put(seq, Common.describe(err));
                            } else {
                                acked.add(md.partition() + "@" + md.offset());
                            }
                        });
                    }
                    p.flush();
                } catch (Throwable t) {
                    producerError.set(t);
                }
            }, "producer");
            producerThread.start();

            Set<String> consumed = ConcurrentHashMap.newKeySet();
            AtomicInteger deliveries = new AtomicInteger();
            Properties props = Common.consumerProps(args.bootstrap, group);
            props.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignorClass);
            if (args.has("group-protocol")) {
                props.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, args.get("group-protocol", "classic"));
            }
            List<Member> live = new ArrayList<>();
            List<Member> all = new ArrayList<>();
            List<String> problems = new ArrayList<>();
            Map<String, Double> stepTimes = new java.util.LinkedHashMap<>();

            // Joins, then leaves, each waiting for the group to settle.
            String[] steps = {"join c1", "join c2", "join c3", "leave c1", "leave c2"};
            for (String step : steps) {
                long t = System.nanoTime();
                String who = step.substring(step.indexOf(' ') + 1);
                if (step.startsWith("join")) {
                    Member m = new Member(who, props, topic, consumed, deliveries);
                    live.add(m);
                    all.add(m);
                    m.thread.start();
                } else {
                    Member m = live.stream().filter(x -> x.name.equals(who)).findFirst().orElseThrow();
                    live.remove(m);
                    m.stop.set(true);
                    m.thread.join(TimeUnit.SECONDS.toMillis(60));
                    if (m.thread.isAlive()) {
                        problems.add(who + " did not close within 60s");
                    }
                }
                final List<Member> now = new ArrayList<>(live);
                int before = consumed.size();
                boolean settled = waitFor(settleS, () -> split(now, partitions) && consumed.size() > before);
                double took = (System.nanoTime() - t) / 1e9;
                stepTimes.put(step, took);
                Common.log("%s: %s after %.1fs; %s", step, settled ? "settled" : "NOT settled", took, owners(now));
                if (!settled) {
                    problems.add("after '" + step + "' the group did not settle within " + settleS + "s: "
                            + owners(now));
                    break;
                }
                Thread.sleep(TimeUnit.SECONDS.toMillis(dwellS));
                if (!split(now, partitions)) {
                    problems.add("after '" + step + "' the assignment changed while nobody joined or left: "
                            + owners(now));
                }
            }

            // Stop writing; the last member drains and leaves.
            stopProducer.set(true);
            producerThread.join(TimeUnit.SECONDS.toMillis(130));
            boolean drained = waitFor(60, () -> consumed.containsAll(acked));
            for (Member m : live) {
                m.stop.set(true);
            }
            for (Member m : live) {
                m.thread.join(TimeUnit.SECONDS.toMillis(60));
                if (m.thread.isAlive()) {
                    problems.add(m.name + " did not close within 60s");
                }
            }

            Map<TopicPartition, OffsetSpec> latest = new HashMap<>();
            for (TopicPartition tp : Common.partitions(topic, partitions)) {
                latest.put(tp, OffsetSpec.latest());
            }
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> ends =
                    admin.listOffsets(latest).all().get(30, TimeUnit.SECONDS);
            Map<TopicPartition, OffsetAndMetadata> committed =
                    admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get(30, TimeUnit.SECONDS);

            Common.log("produced %d acknowledged (%d failed), consumed %d distinct in %d deliveries",
                    acked.size(), sendErrors.size(), consumed.size(), deliveries.get());
            Common.log("step times %s", stepTimes);
            for (Member m : all) {
                Common.log("%s: %d assignments, %d whole revocations", m.name, m.rebalances.get(),
                        m.wholeRevokes.get());
                if (m.error.get() != null) {
                    problems.add(m.name + " failed: " + Common.describe(m.error.get()));
                }
            }
            if (producerError.get() != null) {
                problems.add("producer failed: " + Common.describe(producerError.get()));
            }
            if (!sendErrors.isEmpty()) {
                problems.add(sendErrors.size() + " sends failed, e.g. " + sendErrors.values().iterator().next());
            }
            if (acked.isEmpty()) {
                problems.add("nothing was produced");
            }
            if (!drained) {
                Set<String> missing = new HashSet<>(acked);
                missing.removeAll(consumed);
                List<String> some = new ArrayList<>(missing);
                Collections.sort(some);
                problems.add(missing.size() + " acknowledged records never consumed, e.g. "
                        + some.subList(0, Math.min(10, some.size())));
            }
            for (TopicPartition tp : Common.partitions(topic, partitions)) {
                long end = ends.get(tp).offset();
                OffsetAndMetadata c = committed.get(tp);
                if (end > 0 && (c == null || c.offset() != end)) {
                    problems.add("committed offset of partition " + tp.partition() + " is "
                            + (c == null ? "none" : c.offset()) + ", log end " + end);
                }
            }
            if (assignor.equals("cooperative-sticky")) {
                for (Member m : all) {
                    if (m.wholeRevokes.get() > 0) {
                        problems.add(m.name + " had all its partitions revoked " + m.wholeRevokes.get()
                                + " times under cooperative-sticky");
                    }
                }
            }
            if (!problems.isEmpty()) {
                throw new Common.CheckFailed(String.join("; ", problems));
            }
        }
    }

    /** The partitions are split among exactly these members, each owning some, none twice. */
    static boolean split(List<Member> members, int partitions) {
        Set<TopicPartition> union = new HashSet<>();
        int total = 0;
        for (Member m : members) {
            Set<TopicPartition> o = new HashSet<>(m.owned);
            if (o.isEmpty()) {
                return false;
            }
            union.addAll(o);
            total += o.size();
        }
        if (members.isEmpty()) {
            return true;
        }
        if (union.size() != partitions || total != partitions) {
            return false;
        }
        // Balanced: sizes differ by at most one.
        int min = Integer.MAX_VALUE;
        int max = 0;
        for (Member m : members) {
            min = Math.min(min, m.owned.size());
            max = Math.max(max, m.owned.size());
        }
        return max - min <= 1;
    }

    static String owners(List<Member> members) {
        Map<String, String> out = new TreeMap<>();
        for (Member m : members) {
            out.put(m.name, names(m.owned));
        }
        return out.toString();
    }

    static boolean waitFor(long seconds, BooleanSupplier cond) throws InterruptedException {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(seconds);
        while (System.nanoTime() < deadline) {
            if (cond.getAsBoolean()) {
                return true;
            }
            Thread.sleep(50);
        }
        return cond.getAsBoolean();
    }
}
