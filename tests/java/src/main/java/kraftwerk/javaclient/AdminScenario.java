package kraftwerk.javaclient;

import java.util.ArrayList;
import java.util.Collection;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.Config;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.ConsumerGroupDescription;
import org.apache.kafka.clients.admin.ConsumerGroupListing;
import org.apache.kafka.clients.admin.CreateTopicsOptions;
import org.apache.kafka.clients.admin.CreateTopicsResult;
import org.apache.kafka.clients.admin.DeletedRecords;
import org.apache.kafka.clients.admin.DescribeClusterResult;
import org.apache.kafka.clients.admin.FeatureMetadata;
import org.apache.kafka.clients.admin.ListOffsetsResult.ListOffsetsResultInfo;
import org.apache.kafka.clients.admin.LogDirDescription;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.QuorumInfo;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.admin.ReplicaInfo;
import org.apache.kafka.clients.admin.TopicDescription;
import org.apache.kafka.clients.admin.TopicListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.TopicPartitionInfo;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;

/**
 * The admin client's calls one by one. Each step prints `STEP name PASS` or
 * `STEP name FAIL reason`; the run fails if any step fails. Later steps use
 * what earlier ones made, but each runs even when an earlier one failed.
 *
 * Options: --brokers N (brokers the cluster has, 1), --replication R (1),
 * --timeout-s (180).
 */
public final class AdminScenario {
    private AdminScenario() {}

    public static void main(String[] argv) {
        Common.main("Admin", argv, 180, AdminScenario::run);
    }

    interface Step {
        void run() throws Exception;
    }

    private static final long T = 30;
    private static final long BASE_TS = 1_700_000_000_000L;
    private static final int RECORDS = 100;
    private static final int MAX_TS_INDEX = 60;

    static void run(Common.Args args) throws Exception {
        final int brokers = args.getInt("brokers", 1);
        final short rf = (short) args.getInt("replication", 1);
        final String topic = Common.unique("adm");
        final String group = Common.unique("adm-group");
        final TopicPartition p0 = new TopicPartition(topic, 0);
        Map<String, String> failures = new LinkedHashMap<>();
        Map<String, Step> steps = new LinkedHashMap<>();

        try (Admin admin = Admin.create(Common.adminProps(args.bootstrap))) {
            steps.put("createTopics", () -> {
                Map<String, String> configs = Map.of("retention.ms", "86400000", "max.message.bytes", "200000",
                        "cleanup.policy", "delete");
                CreateTopicsResult r = admin.createTopics(List.of(new NewTopic(topic, 3, rf).configs(configs)));
                r.all().get(T, TimeUnit.SECONDS);
                Common.check(r.numPartitions(topic).get() == 3, "numPartitions " + r.numPartitions(topic).get());
                Common.check(r.replicationFactor(topic).get() == rf,
                        "replicationFactor " + r.replicationFactor(topic).get());
                Config c = r.config(topic).get();
                Common.check(c.get("retention.ms") != null && "86400000".equals(c.get("retention.ms").value()),
                        "CreateTopics response config retention.ms = " + c.get("retention.ms"));
                Common.check(r.topicId(topic).get() != null && !r.topicId(topic).get().toString().equals(
                        "AAAAAAAAAAAAAAAAAAAAAA"), "topic id " + r.topicId(topic).get());
                waitForLeaders(admin, topic, 3, rf);
            });
            steps.put("createTopics validateOnly and existing", () -> {
                String other = topic + "-validate";
                admin.createTopics(List.of(new NewTopic(other, 2, rf)), new CreateTopicsOptions().validateOnly(true))
                        .all().get(T, TimeUnit.SECONDS);
                Common.check(!admin.listTopics().names().get(T, TimeUnit.SECONDS).contains(other),
                        "validateOnly created the topic");
                expectFailure(() -> admin.createTopics(List.of(new NewTopic(topic, 3, rf))).all()
                        .get(T, TimeUnit.SECONDS), TopicExistsException.class, "creating an existing topic");
            });
            steps.put("listTopics", () -> {
                Map<String, TopicListing> l = admin.listTopics().namesToListings().get(T, TimeUnit.SECONDS);
                Common.check(l.containsKey(topic), "topic missing from " + l.keySet());
                Common.check(!l.get(topic).isInternal(), "topic listed as internal");
                Common.check(l.keySet().stream().noneMatch(n -> n.startsWith("__")),
                        "internal topics listed without listInternal: " + l.keySet());
            });
            steps.put("describeTopics", () -> {
                TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(T, TimeUnit.SECONDS)
                        .get(topic);
                Common.check(d.partitions().size() == 3, "partitions " + d.partitions().size());
                for (TopicPartitionInfo p : d.partitions()) {
                    Common.check(p.leader() != null && p.leader().id() >= 0, "no leader: " + p);
                    Common.check(p.replicas().size() == rf && p.isr().size() == rf, "replicas/isr: " + p);
                    Common.check(p.replicas().contains(p.leader()), "leader not a replica: " + p);
                }
                Common.check(d.topicId() != null, "no topic id");
                expectFailure(() -> admin.describeTopics(List.of(topic + "-nope")).allTopicNames()
                        .get(T, TimeUnit.SECONDS), UnknownTopicOrPartitionException.class, "describing a missing topic");
            });
            steps.put("describeCluster", () -> {
                DescribeClusterResult r = admin.describeCluster();
                Collection<Node> nodes = r.nodes().get(T, TimeUnit.SECONDS);
                Node controller = r.controller().get(T, TimeUnit.SECONDS);
                String id = r.clusterId().get(T, TimeUnit.SECONDS);
                Common.log("cluster %s nodes %s controller %s", id, nodes, controller);
                Common.check(nodes.size() == brokers, "expected " + brokers + " brokers, got " + nodes);
                Common.check(id != null && !id.isEmpty(), "cluster id " + id);
                Common.check(controller != null && controller.id() >= 0, "controller " + controller);
            });
            steps.put("describeConfigs topic", () -> {
                ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
                Config c = admin.describeConfigs(List.of(res)).all().get(T, TimeUnit.SECONDS).get(res);
                ConfigEntry ret = c.get("retention.ms");
                Common.check(ret != null && "86400000".equals(ret.value()), "retention.ms " + ret);
                Common.check(ret.source() == ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG, "retention.ms source "
                        + ret.source());
                ConfigEntry seg = c.get("segment.bytes");
                Common.check(seg != null && seg.value() != null, "segment.bytes missing: " + seg);
                Common.check(seg.source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG,
                        "segment.bytes source " + seg.source());
                Common.check(c.get("cleanup.policy") != null && "delete".equals(c.get("cleanup.policy").value()),
                        "cleanup.policy " + c.get("cleanup.policy"));
            });
            steps.put("describeConfigs broker", () -> {
                Node any = admin.describeCluster().nodes().get(T, TimeUnit.SECONDS).iterator().next();
                ConfigResource res = new ConfigResource(ConfigResource.Type.BROKER, String.valueOf(any.id()));
                Config c = admin.describeConfigs(List.of(res)).all().get(T, TimeUnit.SECONDS).get(res);
                Common.check(c.entries().size() > 10, "only " + c.entries().size() + " broker configs");
                ConfigEntry np = c.get("num.partitions");
                Common.check(np != null && np.value() != null, "num.partitions " + np);
                ConfigEntry nodeId = c.get("node.id");
                Common.check(nodeId != null && String.valueOf(any.id()).equals(nodeId.value()), "node.id " + nodeId);
            });
            steps.put("incrementalAlterConfigs", () -> {
                ConfigResource res = new ConfigResource(ConfigResource.Type.TOPIC, topic);
                Map<ConfigResource, Collection<AlterConfigOp>> ops = Map.of(res, List.of(
                        new AlterConfigOp(new ConfigEntry("retention.ms", "3600000"), AlterConfigOp.OpType.SET),
                        new AlterConfigOp(new ConfigEntry("max.message.bytes", ""), AlterConfigOp.OpType.DELETE),
                        new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"),
                                AlterConfigOp.OpType.APPEND)));
                admin.incrementalAlterConfigs(ops).all().get(T, TimeUnit.SECONDS);
                waitUntil("altered topic configs visible", () -> {
                    Config c = admin.describeConfigs(List.of(res)).all().get(T, TimeUnit.SECONDS).get(res);
                    String policy = c.get("cleanup.policy") == null ? "" : c.get("cleanup.policy").value();
                    return "3600000".equals(c.get("retention.ms").value())
                            && c.get("max.message.bytes").source() != ConfigEntry.ConfigSource.DYNAMIC_TOPIC_CONFIG
                            && Set.of(policy.split(",")).equals(Set.of("delete", "compact"));
                }, () -> admin.describeConfigs(List.of(res)).all().get(T, TimeUnit.SECONDS).get(res).entries()
                        .stream().filter(e -> Set.of("retention.ms", "max.message.bytes", "cleanup.policy")
                                .contains(e.name())).toList().toString());
                // Back to plain delete, for the deleteRecords step.
                admin.incrementalAlterConfigs(Map.of(res, List.of(new AlterConfigOp(
                        new ConfigEntry("cleanup.policy", "compact"), AlterConfigOp.OpType.SUBTRACT))))
                        .all().get(T, TimeUnit.SECONDS);
                waitUntil("cleanup.policy back to delete", () -> "delete".equals(admin.describeConfigs(List.of(res))
                        .all().get(T, TimeUnit.SECONDS).get(res).get("cleanup.policy").value()), () -> "");
            });
            steps.put("createPartitions", () -> {
                admin.createPartitions(Map.of(topic, NewPartitions.increaseTo(5))).all().get(T, TimeUnit.SECONDS);
                waitForLeaders(admin, topic, 5, rf);
            });
            steps.put("produce for listOffsets", () -> {
                try (KafkaProducer<String, String> p = new KafkaProducer<>(Common.producerProps(args.bootstrap))) {
                    for (int i = 0; i < RECORDS; i++) {
                        long ts = i == MAX_TS_INDEX ? BASE_TS + 1_000_000 : BASE_TS + i * 1000L;
                        p.send(new ProducerRecord<>(topic, 0, ts, "k" + i, "v" + i)).get(T, TimeUnit.SECONDS);
                    }
                    for (int part = 1; part < 5; part++) {
                        p.send(new ProducerRecord<>(topic, part, "k", "v")).get(T, TimeUnit.SECONDS);
                    }
                }
            });
            steps.put("listOffsets", () -> {
                Map<String, OffsetSpec> specs = new LinkedHashMap<>();
                specs.put("earliest", OffsetSpec.earliest());
                specs.put("latest", OffsetSpec.latest());
                specs.put("maxTimestamp", OffsetSpec.maxTimestamp());
                specs.put("forTimestamp", OffsetSpec.forTimestamp(BASE_TS + 30_500));
                specs.put("forTimestamp exact", OffsetSpec.forTimestamp(BASE_TS + 42_000));
                specs.put("forTimestamp beyond", OffsetSpec.forTimestamp(BASE_TS + 5_000_000));
                specs.put("earliestLocal", OffsetSpec.earliestLocal());
                Map<String, ListOffsetsResultInfo> got = new LinkedHashMap<>();
                List<String> bad = new ArrayList<>();
                for (Map.Entry<String, OffsetSpec> s : specs.entrySet()) {
                    try {
                        got.put(s.getKey(), admin.listOffsets(Map.of(p0, s.getValue())).partitionResult(p0)
                                .get(T, TimeUnit.SECONDS));
                    } catch (ExecutionException e) {
                        bad.add(s.getKey() + ": " + Common.describe(e));
                    }
                }
                Common.log("listOffsets %s", got);
                expectOffset(bad, got, "earliest", 0, -1);
                expectOffset(bad, got, "latest", RECORDS, -1);
                expectOffset(bad, got, "maxTimestamp", MAX_TS_INDEX, BASE_TS + 1_000_000);
                expectOffset(bad, got, "forTimestamp", 31, BASE_TS + 31_000);
                expectOffset(bad, got, "forTimestamp exact", 42, BASE_TS + 42_000);
                expectOffset(bad, got, "forTimestamp beyond", -1, -1);
                expectOffset(bad, got, "earliestLocal", 0, -1);
                Common.check(bad.isEmpty(), String.join("; ", bad));
            });
            steps.put("consumer group: describe while active", () -> {
                Properties cp = Common.consumerProps(args.bootstrap, group);
                cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
                try (KafkaConsumer<String, String> c = new KafkaConsumer<>(cp)) {
                    c.subscribe(List.of(topic));
                    long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(T);
                    int seen = 0;
                    while (seen < RECORDS + 4 && System.nanoTime() < deadline) {
                        seen += c.poll(Common.ms(200)).count();
                    }
                    Common.check(seen == RECORDS + 4, "consumed " + seen + " of " + (RECORDS + 4));
                    c.commitSync();
                    ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).describedGroups()
                            .get(group).get(T, TimeUnit.SECONDS);
                    Common.log("active group: %s", d);
                    Common.check(d.groupState() == GroupState.STABLE, "state " + d.groupState());
                    Common.check(d.members().size() == 1, "members " + d.members());
                    Common.check(d.members().iterator().next().assignment().topicPartitions().size() == 5,
                            "assignment " + d.members().iterator().next().assignment());
                    Common.check(d.coordinator() != null && d.coordinator().id() >= 0, "coordinator " + d.coordinator());
                    Common.check(!d.isSimpleConsumerGroup(), "reported as a simple group");
                    Common.check(d.partitionAssignor() != null && !d.partitionAssignor().isEmpty(),
                            "assignor '" + d.partitionAssignor() + "'");
                }
            });
            steps.put("listConsumerGroups", () -> {
                waitUntil("group listed as Empty", () -> {
                    for (ConsumerGroupListing l : admin.listConsumerGroups().all().get(T, TimeUnit.SECONDS)) {
                        if (l.groupId().equals(group)) {
                            return l.groupState().orElse(null) == GroupState.EMPTY;
                        }
                    }
                    return false;
                }, () -> admin.listConsumerGroups().all().get(T, TimeUnit.SECONDS).toString());
            });
            steps.put("describeConsumerGroups", () -> {
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).describedGroups().get(group)
                        .get(T, TimeUnit.SECONDS);
                Common.check(d.groupState() == GroupState.EMPTY, "state " + d.groupState());
                Common.check(d.members().isEmpty(), "members " + d.members());
                // DescribeGroups v6 (KIP-1043): an unknown group is GROUP_ID_NOT_FOUND,
                // as Apache Kafka 4.1 answers it.
                expectFailure(() -> admin.describeConsumerGroups(List.of(group + "-nope"))
                        .describedGroups().get(group + "-nope").get(T, TimeUnit.SECONDS),
                        GroupIdNotFoundException.class, "describing an unknown group");
            });
            steps.put("listConsumerGroupOffsets", () -> {
                Map<TopicPartition, OffsetAndMetadata> o = admin.listConsumerGroupOffsets(group)
                        .partitionsToOffsetAndMetadata().get(T, TimeUnit.SECONDS);
                Common.check(o.get(p0) != null && o.get(p0).offset() == RECORDS, "partition 0 at " + o.get(p0));
                for (int part = 1; part < 5; part++) {
                    OffsetAndMetadata m = o.get(new TopicPartition(topic, part));
                    Common.check(m != null && m.offset() == 1, "partition " + part + " at " + m);
                }
            });
            steps.put("alterConsumerGroupOffsets", () -> {
                admin.alterConsumerGroupOffsets(group, Map.of(p0, new OffsetAndMetadata(10, "rewound")))
                        .all().get(T, TimeUnit.SECONDS);
                OffsetAndMetadata m = admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata()
                        .get(T, TimeUnit.SECONDS).get(p0);
                Common.check(m != null && m.offset() == 10 && "rewound".equals(m.metadata()), "after alter: " + m);
            });
            steps.put("deleteConsumerGroupOffsets", () -> {
                admin.deleteConsumerGroupOffsets(group, Set.of(p0)).all().get(T, TimeUnit.SECONDS);
                Map<TopicPartition, OffsetAndMetadata> o = admin.listConsumerGroupOffsets(group)
                        .partitionsToOffsetAndMetadata().get(T, TimeUnit.SECONDS);
                Common.check(o.get(p0) == null, "partition 0 still at " + o.get(p0));
            });
            steps.put("deleteConsumerGroups", () -> {
                admin.deleteConsumerGroups(List.of(group)).all().get(T, TimeUnit.SECONDS);
                boolean listed = admin.listConsumerGroups().all().get(T, TimeUnit.SECONDS).stream()
                        .anyMatch(l -> l.groupId().equals(group));
                Common.check(!listed, "group still listed");
                Map<TopicPartition, OffsetAndMetadata> o = admin.listConsumerGroupOffsets(group)
                        .partitionsToOffsetAndMetadata().get(T, TimeUnit.SECONDS);
                Common.check(o.isEmpty(), "offsets survive deletion: " + o);
            });
            steps.put("describeLogDirs", () -> {
                Collection<Node> nodes = admin.describeCluster().nodes().get(T, TimeUnit.SECONDS);
                List<Integer> ids = nodes.stream().map(Node::id).toList();
                Map<Integer, Map<String, LogDirDescription>> dirs = admin.describeLogDirs(ids).allDescriptions()
                        .get(T, TimeUnit.SECONDS);
                int replicas = 0;
                long p0Size = -1;
                for (Map.Entry<Integer, Map<String, LogDirDescription>> b : dirs.entrySet()) {
                    Common.check(!b.getValue().isEmpty(), "broker " + b.getKey() + " reports no log dir");
                    for (Map.Entry<String, LogDirDescription> d : b.getValue().entrySet()) {
                        Common.check(d.getValue().error() == null, d.getKey() + ": " + d.getValue().error());
                        for (Map.Entry<TopicPartition, ReplicaInfo> r : d.getValue().replicaInfos().entrySet()) {
                            if (r.getKey().topic().equals(topic)) {
                                replicas++;
                                if (r.getKey().partition() == 0) {
                                    p0Size = Math.max(p0Size, r.getValue().size());
                                }
                            }
                        }
                    }
                }
                Common.check(replicas == 5 * rf, "found " + replicas + " replicas of the topic, expected " + 5 * rf);
                Common.check(p0Size > 0, "partition 0 size " + p0Size);
            });
            steps.put("deleteRecords", () -> {
                Map<TopicPartition, DeletedRecords> r = admin.deleteRecords(Map.of(p0, RecordsToDelete
                        .beforeOffset(50))).lowWatermarks().entrySet().stream().collect(
                        HashMap::new, (m, e) -> {
                            try {
                                m.put(e.getKey(), e.getValue().get(T, TimeUnit.SECONDS));
                            } catch (Exception ex) {
                                throw new Common.CheckFailed(Common.describe(ex), ex);
                            }
                        }, HashMap::putAll);
                Common.check(r.get(p0).lowWatermark() == 50, "low watermark " + r.get(p0).lowWatermark());
                long earliest = admin.listOffsets(Map.of(p0, OffsetSpec.earliest())).partitionResult(p0)
                        .get(T, TimeUnit.SECONDS).offset();
                Common.check(earliest == 50, "earliest offset after deleteRecords " + earliest);
            });
            steps.put("describeMetadataQuorum", () -> {
                QuorumInfo q = admin.describeMetadataQuorum().quorumInfo().get(T, TimeUnit.SECONDS);
                Common.log("quorum %s", q);
                Common.check(q.leaderId() >= 0, "leader " + q.leaderId());
                Common.check(q.voters().size() == brokers, "voters " + q.voters());
                Common.check(q.highWatermark() > 0, "high watermark " + q.highWatermark());
                Common.check(q.voters().stream().anyMatch(v -> v.replicaId() == q.leaderId()),
                        "leader not among voters");
            });
            steps.put("describeFeatures", () -> {
                FeatureMetadata f = admin.describeFeatures().featureMetadata().get(T, TimeUnit.SECONDS);
                Common.log("features %s", f);
                Common.check(f.finalizedFeatures().containsKey("metadata.version"),
                        "no finalized metadata.version: " + f.finalizedFeatures());
                Common.check(f.supportedFeatures().containsKey("metadata.version"),
                        "no supported metadata.version: " + f.supportedFeatures());
                Common.check(f.finalizedFeaturesEpoch().isPresent(), "no finalized features epoch");
            });
            steps.put("deleteTopics", () -> {
                admin.deleteTopics(List.of(topic)).all().get(T, TimeUnit.SECONDS);
                waitUntil("topic gone from listTopics", () -> !admin.listTopics().names().get(T, TimeUnit.SECONDS)
                        .contains(topic), () -> "");
                expectFailure(() -> admin.deleteTopics(List.of(topic)).all().get(T, TimeUnit.SECONDS),
                        UnknownTopicOrPartitionException.class, "deleting a deleted topic");
            });

            for (Map.Entry<String, Step> s : steps.entrySet()) {
                long t = System.nanoTime();
                try {
                    s.getValue().run();
                    System.out.printf("STEP %s PASS (%.2fs)%n", s.getKey(), (System.nanoTime() - t) / 1e9);
                } catch (Throwable e) {
                    String why = e instanceof Common.CheckFailed ? e.getMessage() : Common.describe(e);
                    failures.put(s.getKey(), why);
                    System.out.printf("STEP %s FAIL %s%n", s.getKey(), why.replace('\n', ' '));
                }
                System.out.flush();
            }
        }
        if (!failures.isEmpty()) {
            throw new Common.CheckFailed(failures.size() + " of " + steps.size() + " steps failed: "
                    + String.join(", ", failures.keySet()));
        }
    }

    interface Cond {
        boolean get() throws Exception;
    }

    interface Show {
        String get() throws Exception;
    }

    static void waitUntil(String what, Cond cond, Show show) throws Exception {
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(T);
        while (!cond.get()) {
            if (System.nanoTime() > deadline) {
                throw new Common.CheckFailed("not " + what + " after " + T + "s: " + show.get());
            }
            Thread.sleep(100);
        }
    }

    static void waitForLeaders(Admin admin, String topic, int partitions, short rf) throws Exception {
        waitUntil(partitions + " partitions with leaders", () -> {
            TopicDescription d = admin.describeTopics(List.of(topic)).allTopicNames().get(T, TimeUnit.SECONDS)
                    .get(topic);
            return d.partitions().size() == partitions && d.partitions().stream()
                    .allMatch(p -> p.leader() != null && p.leader().id() >= 0 && p.isr().size() == rf);
        }, () -> admin.describeTopics(List.of(topic)).allTopicNames().get(T, TimeUnit.SECONDS).get(topic)
                .toString());
    }

    static void expectFailure(Step call, Class<? extends Throwable> expected, String what) throws Exception {
        try {
            call.run();
        } catch (ExecutionException e) {
            if (expected.isInstance(e.getCause())) {
                return;
            }
            throw new Common.CheckFailed(what + ": expected " + expected.getSimpleName() + ", got "
                    + Common.describe(e));
        }
        throw new Common.CheckFailed(what + ": expected " + expected.getSimpleName() + ", but it succeeded");
    }

    static void expectOffset(List<String> bad, Map<String, ListOffsetsResultInfo> got, String spec, long offset,
            long timestamp) {
        ListOffsetsResultInfo i = got.get(spec);
        if (i == null) {
            return;
        }
        if (i.offset() != offset || (timestamp != -1 && i.timestamp() != timestamp)) {
            bad.add(spec + ": got offset " + i.offset() + " timestamp " + i.timestamp() + ", expected offset "
                    + offset + (timestamp != -1 ? " timestamp " + timestamp : ""));
        }
    }
}
