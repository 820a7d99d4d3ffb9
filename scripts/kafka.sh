#!/usr/bin/env bash
# Run a single-node Apache Kafka broker (KRaft, broker+controller roles) for tests and benchmarks.
# The jars come from Maven Central through Maven: no distribution tarball, no Docker.
#
# Usage: scripts/kafka.sh start|stop|status|restart|fetch|tools
#   start is idempotent and waits for readiness; stop is SIGTERM, 30s, then SIGKILL; restart keeps
#   data; fetch only caches the jars; tools installs kcat with apt-get.
# Environment (defaults in brackets):
#   KAFKA_VERSION          [4.3.1]  org.apache.kafka:kafka_2.13 version (3.9.x works too)
#   KAFKA_PORT             [9092]   PLAINTEXT listener on 127.0.0.1
#   KAFKA_SASL_PORT        [9093]   SASL_PLAINTEXT listener: PLAIN, SCRAM-SHA-256, SCRAM-SHA-512
#   KAFKA_CONTROLLER_PORT  [9095]   KRaft controller listener
#   KAFKA_DATA_DIR         [$KTRANSPORT_CACHE/kafka-data-$KAFKA_PORT]  data, config, pid, kafka.log
#   KAFKA_START_TIMEOUT    [90]     seconds to wait for readiness
#   KTRANSPORT_CACHE       [$HOME/.cache/ktransport]
# SASL user for PLAIN and SCRAM: ktransport / ktransport-secret.
# Note: Kafka 4.x enforces the RFC 5802 SCRAM nonce check; librdkafka < 2.6.1 (Debian 12 kcat
# ships 2.0.2) fails SCRAM against 4.x brokers while PLAIN and the Java client work.
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.3.1}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-9093}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9095}"
CACHE="${KTRANSPORT_CACHE:-$HOME/.cache/ktransport}"
DATA_DIR="${KAFKA_DATA_DIR:-$CACHE/kafka-data-$KAFKA_PORT}"
START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_HOME="$CACHE/kafka-$KAFKA_VERSION"
LIBS="$KAFKA_HOME/libs"
LOG4J_VERSION=2.24.3
SASL_USER=ktransport
SASL_PASSWORD=ktransport-secret
PID_FILE="$DATA_DIR/kafka.pid"
LOG_FILE="$DATA_DIR/kafka.log"
JAVA=(java -Xms128m -Xmx512m -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile="$DATA_DIR/log4j2.properties" -cp "$LIBS/*")

say() { echo "kafka: $*" >&2; }
die() { say "error: $*"; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Pid from the pid file if that process is alive; broker_pid also checks it is a broker (pid reuse).
pid_alive() { local p; p="$(cat "$PID_FILE" 2>/dev/null)" && [[ -n "$p" ]] && kill -0 "$p" 2>/dev/null && echo "$p"; }
broker_pid() {
  local p
  p="$(pid_alive)" && { [[ ! -r "/proc/$p/cmdline" ]] || grep -qa kafka.Kafka "/proc/$p/cmdline"; } && echo "$p"
}

# Port answers and (if we launched it) the log says the server finished starting.
ready() {
  port_open "$KAFKA_PORT" || return 1
  [[ ! -f "$LOG_FILE" ]] || grep -q 'Kafka Server started' "$LOG_FILE"
}

fetch() {
  [[ -d "$LIBS" ]] && return 0
  command -v mvn >/dev/null || die "mvn not found (needed once to fetch the Kafka jars)"
  mkdir -p "$KAFKA_HOME"
  exec 8>"$KAFKA_HOME/.fetch.lock"
  flock 8
  [[ -d "$LIBS" ]] && return 0 # a concurrent run fetched it
  say "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and dependencies with Maven (one-time)"
  cat >"$KAFKA_HOME/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0"><modelVersion>4.0.0</modelVersion>
  <groupId>ktransport</groupId><artifactId>kafka-runtime</artifactId><version>1</version><packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <!-- slf4j 1.x binding + log4j 1.2 API bridge, as shipped in the Kafka distribution -->
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-1.2-api</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
  <build><plugins><plugin><artifactId>maven-dependency-plugin</artifactId><version>3.6.1</version></plugin></plugins></build>
</project>
EOF
  rm -rf "$LIBS.tmp"
  if ! mvn -B -q -f "$KAFKA_HOME/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$LIBS.tmp" >"$KAFKA_HOME/maven.log" 2>&1; then
    tail -n 30 "$KAFKA_HOME/maven.log" >&2
    die "maven could not fetch kafka_2.13:$KAFKA_VERSION (full log: $KAFKA_HOME/maven.log)"
  fi
  mv "$LIBS.tmp" "$LIBS"
  say "cached $(find "$LIBS" -name '*.jar' | wc -l) jars in $LIBS"
}

write_config() {
  cat >"$DATA_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
sasl.enabled.mechanisms=PLAIN,SCRAM-SHA-256,SCRAM-SHA-512
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$SASL_USER="$SASL_PASSWORD";
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
log.dirs=$DATA_DIR/logs
num.partitions=1
auto.create.topics.enable=true
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  cat >"$DATA_DIR/log4j2.properties" <<'EOF'
status=warn
appender.out.type=Console
appender.out.name=STDOUT
appender.out.layout.type=PatternLayout
appender.out.layout.pattern=[%d] %p %m (%c)%n
rootLogger.level=INFO
rootLogger.appenderRef.out.ref=STDOUT
logger.request.name=kafka.request.logger
logger.request.level=WARN
EOF
}

# One-time KRaft storage format; SCRAM credentials are written into the bootstrap metadata.
format_storage() {
  [[ -f "$DATA_DIR/logs/meta.properties" ]] && return 0
  local cluster_id
  cluster_id="$(head -c16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  say "formatting storage in $DATA_DIR/logs (cluster id $cluster_id)"
  "${JAVA[@]}" kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" \
    -c "$DATA_DIR/server.properties" \
    --add-scram "SCRAM-SHA-256=[name=$SASL_USER,password=$SASL_PASSWORD]" \
    --add-scram "SCRAM-SHA-512=[name=$SASL_USER,password=$SASL_PASSWORD]" \
    >"$DATA_DIR/format.log" 2>&1 || { tail -n 30 "$DATA_DIR/format.log" >&2; die "storage format failed"; }
}

start() {
  if ready; then say "already running on 127.0.0.1:$KAFKA_PORT"; return 0; fi
  command -v java >/dev/null || die "java not found (Java 17+ required)"
  fetch
  mkdir -p "$DATA_DIR"
  exec 9>"$DATA_DIR/.lock"
  flock 9
  if broker_pid >/dev/null || port_open "$KAFKA_PORT"; then
    say "broker is already starting; waiting for it"
  else
    write_config
    format_storage
    [[ -f "$LOG_FILE" ]] && mv -f "$LOG_FILE" "$LOG_FILE.prev"
    say "starting kafka $KAFKA_VERSION (ports $KAFKA_PORT/$KAFKA_SASL_PORT/$KAFKA_CONTROLLER_PORT, data $DATA_DIR)"
    nohup "${JAVA[@]}" kafka.Kafka "$DATA_DIR/server.properties" >"$LOG_FILE" 2>&1 </dev/null 8>&- 9>&- &
    echo $! >"$PID_FILE"
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until ready; do
    if ! pid_alive >/dev/null && ! port_open "$KAFKA_PORT"; then
      tail -n 50 "$LOG_FILE" >&2 || true
      die "broker exited during startup (log: $LOG_FILE)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 50 "$LOG_FILE" >&2 || true
      say "broker not ready after ${START_TIMEOUT}s; stopping it"
      stop
      die "startup timed out (log: $LOG_FILE)"
    fi
    sleep 0.2
  done
  say "ready on 127.0.0.1:$KAFKA_PORT (SASL on $KAFKA_SASL_PORT, pid $(broker_pid || echo '?'))"
}

stop() {
  local pid
  if ! pid="$(broker_pid)"; then
    rm -f "$PID_FILE"
    port_open "$KAFKA_PORT" && say "warning: port $KAFKA_PORT answers, but no broker pid in $DATA_DIR; left alone"
    say "not running"
    return 0
  fi
  say "stopping pid $pid"
  kill -TERM "$pid" 2>/dev/null || true
  local i
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    say "still alive after 30s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
  fi
  rm -f "$PID_FILE"
  say "stopped"
}

status() {
  if port_open "$KAFKA_PORT"; then
    echo "running on 127.0.0.1:$KAFKA_PORT (pid $(broker_pid || echo unknown), data $DATA_DIR)"
  else
    echo "stopped (127.0.0.1:$KAFKA_PORT)"
    return 1
  fi
}

tools() {
  command -v kcat >/dev/null && { say "kcat already installed"; return 0; }
  local sudo=()
  ((EUID == 0)) || sudo=(sudo)
  say "installing kcat with apt-get"
  "${sudo[@]}" apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kcat >/dev/null
  say "installed $(command -v kcat)"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  restart) stop && start ;;
  fetch) fetch ;;
  tools) tools ;;
  *) echo "usage: $0 start|stop|status|restart|fetch|tools" >&2; exit 2 ;;
esac
