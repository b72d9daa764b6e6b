/*
 * rdkperf: a small librdkafka client for bench/compare.py, so that the
 * librdkafka column is measured by C and not by a Python loop.
 *
 *   rdkperf produce  -b BOOTSTRAP -t TOPIC -n RECORDS -s SIZE [-r RATE] [-X key=value]...
 *   rdkperf consume  -b BOOTSTRAP -t TOPIC -n RECORDS [-g GROUP] [-i IDLE_MS] [-X key=value]...
 *   rdkperf e2e      -b BOOTSTRAP -t TOPIC -n RECORDS -s SIZE [-X key=value]...
 *   rdkperf metadata -b BOOTSTRAP -n REQUESTS
 *
 * produce: like kafka-producer-perf-test, latency from before produce()
 * to the delivery report. consume: without -g, every partition assigned
 * from the beginning (like `kraftwerk bench consume`); with -g, subscribed
 * in that group, committing offsets every second, ending IDLE_MS after the
 * last record. e2e: like
 * kafka-e2e-latency, one record at a time, sent (linger.ms=0) and waited
 * for, then read back by a consumer at the end of the log
 * (fetch.wait.max.ms=0). metadata: the time of a Metadata request for all
 * topics. -X settings go to the client (in e2e, to its producer). Prints
 * one JSON object.
 *
 * Build: cc -O2 -o rdkperf rdkperf.c -lrdkafka
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define PROPS_MAX 64
#define CONSUME_BATCH_MAX 1024
#define FIRST_RECORD_WAIT_MS 60000
#define E2E_WAIT_MS 60000
#define FLUSH_WAIT_MS 600000

static const char *mode, *brokers, *topic, *group;
static long long records = 0;
static int record_size = 100, idle_ms = 5000;
static double rate = -1;
static const char *props[PROPS_MAX];
static int props_count = 0;

static uint32_t *latencies_us;
static long long latencies_count = 0, delivery_errors = 0, delivered = 0;
/* produce times each delivery; e2e times the read instead. */
static int time_deliveries = 1;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double wall_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what, const char *detail) {
    fprintf(stderr, "rdkperf: %s: %s\n", what, detail);
    exit(1);
}

static void set(rd_kafka_conf_t *conf, const char *key, const char *value) {
    char err[512];
    if (rd_kafka_conf_set(conf, key, value, err, sizeof err) != RD_KAFKA_CONF_OK)
        die(key, err);
}

/* A configuration with the bootstrap list and the -X settings. */
static rd_kafka_conf_t *new_conf(void) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set(conf, "bootstrap.servers", brokers);
    for (int i = 0; i < props_count; i++) {
        char key[256];
        const char *eq = strchr(props[i], '=');
        if (!eq || eq - props[i] >= (long)sizeof key)
            die("-X needs key=value", props[i]);
        memcpy(key, props[i], eq - props[i]);
        key[eq - props[i]] = '\0';
        set(conf, key, eq + 1);
    }
    return conf;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static double percentile_ms(double q) {
    if (latencies_count == 0)
        return 0;
    long long i = (long long)(q * latencies_count);
    if (i >= latencies_count)
        i = latencies_count - 1;
    return latencies_us[i] / 1000.0;
}

static void print_latencies(void) {
    qsort(latencies_us, latencies_count, sizeof *latencies_us, cmp_u32);
    double sum = 0;
    for (long long i = 0; i < latencies_count; i++)
        sum += latencies_us[i];
    printf("\"latency_avg_ms\": %.3f, \"latency_p50_ms\": %.3f, \"latency_p95_ms\": %.3f, "
           "\"latency_p99_ms\": %.3f, \"latency_p999_ms\": %.3f, \"latency_max_ms\": %.3f",
           latencies_count ? sum / latencies_count / 1000.0 : 0.0, percentile_ms(0.50), percentile_ms(0.95),
           percentile_ms(0.99), percentile_ms(0.999),
           latencies_count ? latencies_us[latencies_count - 1] / 1000.0 : 0.0);
}

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    (void)opaque;
    delivered++;
    if (m->err) {
        if (delivery_errors++ < 10)
            fprintf(stderr, "rdkperf: delivery failed: %s\n", rd_kafka_err2str(m->err));
        return;
    }
    if (!time_deliveries)
        return;
    uint64_t sent_ns = (uint64_t)(uintptr_t)m->_private;
    uint64_t us = (now_ns() - sent_ns) / 1000;
    if (latencies_count < records)
        latencies_us[latencies_count++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
}

static char *payload(void) {
    char *p = malloc(record_size ? record_size : 1);
    for (int i = 0; i < record_size; i++)
        p[i] = 'A' + rand() % 26;
    return p;
}

static int run_produce(void) {
    char err[512];
    rd_kafka_conf_t *conf = new_conf();
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("producer", err);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    latencies_us = calloc(records ? records : 1, sizeof *latencies_us);
    char *value = payload();
    uint64_t started = now_ns();
    for (long long i = 0; i < records; i++) {
        if (rate > 0) {
            /* Ahead of the schedule: serve delivery reports while waiting,
             * so that their times are not delayed by the wait. */
            uint64_t due = started + (uint64_t)(i * 1e9 / rate);
            for (uint64_t now = now_ns(); due > now; now = now_ns()) {
                if (due - now >= 1000000ull) {
                    rd_kafka_poll(rk, (int)((due - now) / 1000000ull));
                } else {
                    struct timespec ts = {0, (long)(due - now)};
                    nanosleep(&ts, NULL);
                }
            }
        }
        for (;;) {
            uint64_t sent = now_ns();
            if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, value, record_size, NULL, 0,
                                 (void *)(uintptr_t)sent) == 0)
                break;
            rd_kafka_resp_err_t e = rd_kafka_last_error();
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                die("produce", rd_kafka_err2str(e));
            rd_kafka_poll(rk, 1);
        }
        /* Delivery reports are timed when served: serve them at once. */
        rd_kafka_poll(rk, 0);
    }
    rd_kafka_flush(rk, FLUSH_WAIT_MS);
    double elapsed = (now_ns() - started) / 1e9;
    long long unfinished = rd_kafka_outq_len(rk);
    printf("{\"records\": %lld, \"bytes\": %lld, \"errors\": %lld, \"unfinished\": %lld, \"elapsed_s\": %.6f, "
           "\"records_per_sec\": %.1f, \"mb_per_sec\": %.3f, ",
           latencies_count, latencies_count * record_size, delivery_errors, unfinished, elapsed,
           latencies_count / elapsed, latencies_count * (double)record_size / 1048576.0 / elapsed);
    print_latencies();
    printf(", \"librdkafka\": \"%s\"}\n", rd_kafka_version_str());
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return delivery_errors || unfinished ? 2 : 0;
}

static rd_kafka_topic_partition_list_t *all_partitions(rd_kafka_t *rk, int64_t offset) {
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 30000);
    if (e)
        die("metadata", rd_kafka_err2str(e));
    if (md->topic_cnt != 1 || md->topics[0].err || md->topics[0].partition_cnt == 0)
        die("metadata", "the topic has no partitions");
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(md->topics[0].partition_cnt);
    for (int i = 0; i < md->topics[0].partition_cnt; i++)
        rd_kafka_topic_partition_list_add(list, topic, md->topics[0].partitions[i].id)->offset = offset;
    rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return list;
}

/* A consumer in `group_id`; it commits its offsets (every second) only
 * when it is a group member that others may watch (-g). */
static rd_kafka_t *new_consumer(rd_kafka_conf_t *conf, const char *group_id, int commit) {
    char err[512];
    set(conf, "group.id", group_id);
    set(conf, "enable.auto.commit", commit ? "true" : "false");
    if (commit)
        set(conf, "auto.commit.interval.ms", "1000");
    set(conf, "enable.partition.eof", "false");
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!rk)
        die("consumer", err);
    rd_kafka_poll_set_consumer(rk);
    return rk;
}

static int run_consume(void) {
    char group_id[128];
    rd_kafka_conf_t *conf = new_conf();
    set(conf, "auto.offset.reset", "earliest");
    snprintf(group_id, sizeof group_id, "rdkperf-%d", (int)getpid());
    rd_kafka_t *rk = new_consumer(conf, group ? group : group_id, group != NULL);
    if (group) {
        rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
        rd_kafka_topic_partition_list_add(sub, topic, RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(rk, sub);
        if (e)
            die("subscribe", rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(sub);
    } else {
        rd_kafka_topic_partition_list_t *list = all_partitions(rk, RD_KAFKA_OFFSET_BEGINNING);
        rd_kafka_resp_err_t e = rd_kafka_assign(rk, list);
        if (e)
            die("assign", rd_kafka_err2str(e));
        rd_kafka_topic_partition_list_destroy(list);
    }
    rd_kafka_queue_t *queue = rd_kafka_queue_get_consumer(rk);
    rd_kafka_message_t *batch[CONSUME_BATCH_MAX];
    long long count = 0, bytes = 0, errors = 0;
    uint64_t started = now_ns(), first = 0, last = 0;
    double first_wall = 0, last_wall = 0;
    while (records <= 0 || count < records) {
        uint64_t now = now_ns();
        uint64_t since = last ? last : started;
        uint64_t wait_ms = last ? (uint64_t)idle_ms : FIRST_RECORD_WAIT_MS;
        if ((now - since) / 1000000ull > wait_ms)
            break;
        ssize_t n = rd_kafka_consume_batch_queue(queue, 100, batch, CONSUME_BATCH_MAX);
        if (n < 0)
            die("consume", rd_kafka_err2str(rd_kafka_last_error()));
        if (n > 0) {
            last = now_ns();
            last_wall = wall_s();
            if (!first) {
                first = last;
                first_wall = last_wall;
            }
        }
        for (ssize_t i = 0; i < n; i++) {
            if (batch[i]->err) {
                if (errors++ < 10)
                    fprintf(stderr, "rdkperf: consume error: %s\n", rd_kafka_message_errstr(batch[i]));
            } else {
                count++;
                bytes += batch[i]->len;
            }
            rd_kafka_message_destroy(batch[i]);
        }
    }
    double elapsed = last ? (last - started) / 1e9 : 0;
    printf("{\"records\": %lld, \"bytes\": %lld, \"errors\": %lld, \"elapsed_s\": %.6f, \"records_per_sec\": %.1f, "
           "\"mb_per_sec\": %.3f, \"first_record_unix\": %.6f, \"last_record_unix\": %.6f, \"librdkafka\": \"%s\"}\n",
           count, bytes, errors, elapsed, elapsed > 0 ? count / elapsed : 0.0,
           elapsed > 0 ? bytes / 1048576.0 / elapsed : 0.0, first_wall, last_wall, rd_kafka_version_str());
    rd_kafka_queue_destroy(queue);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    /* In a group each member reads its share: the caller adds them up. */
    return !group && records > 0 && count < records ? 2 : 0;
}

static int run_e2e(void) {
    char err[512], group_id[128];
    rd_kafka_conf_t *pconf = new_conf();
    set(pconf, "linger.ms", "0");
    rd_kafka_conf_set_dr_msg_cb(pconf, on_delivery);
    rd_kafka_t *producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof err);
    if (!producer)
        die("producer", err);
    rd_kafka_conf_t *cconf = rd_kafka_conf_new();
    set(cconf, "bootstrap.servers", brokers);
    set(cconf, "fetch.wait.max.ms", "0");
    snprintf(group_id, sizeof group_id, "rdkperf-e2e-%d", (int)getpid());
    rd_kafka_t *consumer = new_consumer(cconf, group_id, 0);

    /* Start every partition at its current end, read now, so that the
     * first record sent is the first one read. */
    rd_kafka_topic_partition_list_t *list = all_partitions(consumer, RD_KAFKA_OFFSET_END);
    for (int i = 0; i < list->cnt; i++) {
        int64_t low, high;
        rd_kafka_resp_err_t e =
            rd_kafka_query_watermark_offsets(consumer, topic, list->elems[i].partition, &low, &high, 30000);
        if (e)
            die("watermarks", rd_kafka_err2str(e));
        list->elems[i].offset = high;
    }
    rd_kafka_resp_err_t e = rd_kafka_assign(consumer, list);
    if (e)
        die("assign", rd_kafka_err2str(e));
    rd_kafka_topic_partition_list_destroy(list);

    rd_kafka_topic_t *rkt = rd_kafka_topic_new(producer, topic, NULL);
    latencies_us = calloc(records ? records : 1, sizeof *latencies_us);
    char *value = payload();
    time_deliveries = 0;
    for (long long i = 0; i < records; i++) {
        uint64_t begin = now_ns();
        long long delivered_before = delivered;
        if (rd_kafka_produce(rkt, RD_KAFKA_PARTITION_UA, RD_KAFKA_MSG_F_COPY, value, record_size, NULL, 0,
                             (void *)(uintptr_t)begin) != 0)
            die("produce", rd_kafka_err2str(rd_kafka_last_error()));
        while (delivered == delivered_before)
            rd_kafka_poll(producer, 100);
        if (delivery_errors)
            die("e2e", "a record was not acknowledged");
        for (;;) {
            rd_kafka_message_t *m = rd_kafka_consumer_poll(consumer, E2E_WAIT_MS);
            if (!m)
                die("e2e", "no record read back within 60 s");
            int ok = !m->err && m->len == (size_t)record_size;
            if (m->err)
                fprintf(stderr, "rdkperf: consume error: %s\n", rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            if (ok)
                break;
        }
        uint64_t us = (now_ns() - begin) / 1000;
        latencies_us[i] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
        latencies_count = i + 1;
    }
    printf("{\"records\": %lld, ", latencies_count);
    print_latencies();
    printf(", \"librdkafka\": \"%s\"}\n", rd_kafka_version_str());
    rd_kafka_topic_destroy(rkt);
    rd_kafka_consumer_close(consumer);
    rd_kafka_destroy(consumer);
    rd_kafka_destroy(producer);
    return 0;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_metadata(void) {
    char err[512];
    rd_kafka_conf_t *conf = new_conf();
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk)
        die("client", err);
    long long requests = records > 0 ? records : 5;
    double *ms = calloc(requests, sizeof *ms);
    long long partitions = 0, leaderless = 0, topics = 0;
    /* The first request also opens the connection: not counted. */
    for (long long i = -1; i < requests; i++) {
        const struct rd_kafka_metadata *md;
        uint64_t begin = now_ns();
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 1, NULL, &md, 120000);
        uint64_t end = now_ns();
        if (e)
            die("metadata", rd_kafka_err2str(e));
        if (i >= 0)
            ms[i] = (end - begin) / 1e6;
        partitions = leaderless = 0;
        topics = md->topic_cnt;
        for (int t = 0; t < md->topic_cnt; t++)
            for (int p = 0; p < md->topics[t].partition_cnt; p++) {
                partitions++;
                leaderless += md->topics[t].partitions[p].leader < 0;
            }
        rd_kafka_metadata_destroy(md);
    }
    qsort(ms, requests, sizeof *ms, cmp_double);
    printf("{\"requests\": %lld, \"median_ms\": %.3f, \"min_ms\": %.3f, \"max_ms\": %.3f, \"topics\": %lld, "
           "\"partitions\": %lld, \"leaderless\": %lld, \"librdkafka\": \"%s\"}\n",
           requests, ms[requests / 2], ms[0], ms[requests - 1], topics, partitions, leaderless,
           rd_kafka_version_str());
    rd_kafka_destroy(rk);
    return 0;
}

static void usage(void) {
    fprintf(stderr, "usage: rdkperf produce|consume|e2e|metadata -b BOOTSTRAP [-t TOPIC] [-n N] [-s SIZE] "
                    "[-r RATE] [-g GROUP] [-i IDLE_MS] [-X key=value]...\n");
    exit(2);
}

int main(int argc, char **argv) {
    if (argc < 2)
        usage();
    mode = argv[1];
    int opt;
    optind = 2;
    while ((opt = getopt(argc, argv, "b:t:n:s:r:g:i:X:")) != -1) {
        switch (opt) {
        case 'b': brokers = optarg; break;
        case 't': topic = optarg; break;
        case 'n': records = atoll(optarg); break;
        case 's': record_size = atoi(optarg); break;
        case 'r': rate = atof(optarg); break;
        case 'g': group = optarg; break;
        case 'i': idle_ms = atoi(optarg); break;
        case 'X':
            if (props_count == PROPS_MAX)
                die("-X", "too many settings");
            props[props_count++] = optarg;
            break;
        default: usage();
        }
    }
    if (!brokers || (!topic && strcmp(mode, "metadata") != 0) || record_size < 0)
        usage();
    srand(7);
    if (!strcmp(mode, "produce"))
        return run_produce();
    if (!strcmp(mode, "consume"))
        return run_consume();
    if (!strcmp(mode, "e2e"))
        return run_e2e();
    if (!strcmp(mode, "metadata"))
        return run_metadata();
    usage();
    return 2;
}
