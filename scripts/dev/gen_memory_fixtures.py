#!/usr/bin/env python3
"""Writes tests/fixtures/memory/past_incidents.jsonl (31 past fixes of different kinds) and queries.json
(new incidents whose evidence should retrieve a specific past fix first). Run from the repo root."""
import json, uuid

PAST = [
 ("nginx-stopped", "nginx", "connect ECONNREFUSED 10.0.0.5:80", ["nginx.service: Main process exited, code=exited, status=1/FAILURE", "nginx.service: Failed with result 'exit-code'"], "nginx stopped after a failed reload", "systemctl restart nginx"),
 ("nginx-port-in-use", "nginx", "502 Bad Gateway", ["bind() to 0.0.0.0:80 failed (98: Address already in use)", "nginx: [emerg] still could not bind()"], "another process held port 80 when nginx restarted", "systemctl restart nginx"),
 ("php-fpm-down", "php-fpm", "502 Bad Gateway from nginx", ["connect() to unix:/run/php/php8.2-fpm.sock failed (2: No such file or directory) while connecting to upstream", "php8.2-fpm.service: Failed with result 'signal'"], "php-fpm crashed, nginx upstream socket missing", "systemctl restart php8.2-fpm"),
 ("disk-full-var-log", "nginx", "500 Internal Server Error", ["write() to \"/var/log/nginx/access.log\" failed (28: No space left on device)", "/dev/sda1 100% /var"], "/var filled by unrotated nginx logs", "/usr/local/lib/medic/clean_logs.sh nginx"),
 ("postgres-disk-full", "postgresql", "database connection failed", ["PANIC: could not write to file \"pg_wal/xlogtemp.123\": No space left on device", "database system is shut down"], "WAL volume full", "/usr/local/lib/medic/clean_logs.sh postgresql"),
 ("java-oom", "tomcat", "timeout after 48000ms", ["Out of memory: Killed process 4711 (java) total-vm:8388608kB", "tomcat.service: A process of this unit has been killed by the OOM killer"], "tomcat heap grew past the container memory limit; OOM killer", "systemctl restart tomcat"),
 ("container-crashloop", "api", "connect ECONNREFUSED 10.0.0.7:3000", ["container api is restarting (exit code 1)", "Error: Cannot find module '/app/dist/server.js'"], "api container crash-looping after a bad image tag", "docker restart api"),
 ("cert-expired", "nginx", "certificate has expired", ["SSL_do_handshake() failed (SSL: error:0A000086:SSL routines::certificate verify failed)", "certificate expired on 2026-11-01"], "Let's Encrypt renewal timer was disabled; certificate expired", "systemctl start certbot-renew"),
 ("pg-too-many-conns", "postgresql", "FATAL: sorry, too many clients already", ["FATAL: remaining connection slots are reserved for non-replication superuser connections", "max_connections = 100 reached"], "connection leak in the app exhausted postgres max_connections", "systemctl restart pgbouncer"),
 ("mysql-too-many", "mysql", "Too many connections", ["ERROR 1040 (08004): Too many connections", "Aborted connection 812 to db: 'shop'"], "mysql max_connections exhausted by stuck workers", "systemctl restart mysql"),
 ("redis-maxmemory", "redis", "OOM command not allowed when used memory > 'maxmemory'", ["OOM command not allowed when used memory > 'maxmemory'", "evicted_keys:0 used_memory_human:2.00G"], "redis maxmemory reached with noeviction policy", "systemctl restart redis-server"),
 ("docker-daemon-dead", "docker", "Cannot connect to the Docker daemon", ["Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?", "docker.service: Failed with result 'timeout'"], "dockerd hung on startup", "systemctl restart docker"),
 ("dns-fail", "unbound", "getaddrinfo ENOTFOUND api.example.org", ["getaddrinfo ENOTFOUND api.example.org", "unbound.service: Deactivated successfully"], "local resolver unbound stopped", "systemctl restart unbound"),
 ("rabbit-disk-alarm", "rabbitmq-server", "publish blocked", ["disk resource limit alarm set on node rabbit@mq1", "Free disk space is insufficient. Free bytes: 48000000. Limit: 50000000"], "rabbitmq disk alarm blocked publishers", "/usr/local/lib/medic/clean_logs.sh rabbitmq-server"),
 ("elastic-heap", "elasticsearch", "cluster health red", ["java.lang.OutOfMemoryError: Java heap space", "[gc][young][123] overhead, spent [8.2s] collecting in the last [8.5s]"], "elasticsearch heap exhausted", "systemctl restart elasticsearch"),
 ("missing-env-file", "worker", "job queue not draining", ["worker.service: Failed to load environment files: No such file or directory", "worker.service: Failed to run 'start' task"], "deploy removed /etc/default/worker", "systemctl start worker"),
 ("socket-permission", "gunicorn", "502 Bad Gateway", ["connect() to unix:/run/gunicorn.sock failed (13: Permission denied) while connecting to upstream"], "gunicorn socket recreated with wrong permissions", "systemctl restart gunicorn"),
 ("inode-exhaustion", "postfix", "mail queue stuck", ["No space left on device", "df -i: /var 100% IUse"], "millions of tiny files in the postfix queue exhausted inodes", "/usr/local/lib/medic/clean_logs.sh postfix"),
 ("swap-thrash", "gitlab", "timeout after 30000ms", ["kswapd0: page allocation stall for 12000ms", "load average: 48.12, 40.01, 30.55"], "gitlab puma workers swapping heavily", "systemctl restart gitlab-runsvdir"),
 ("journald-full", "systemd-journald", "logs missing", ["Journal file /var/log/journal/abc/system.journal is truncated, ignoring file", "Runtime Journal is using 4.0G (max allowed 4.0G)"], "journal grew to its maximum and rotation failed", "journalctl --vacuum-size=500M"),
 ("grafana-db-locked", "grafana-server", "Dashboard failed to load", ["database is locked", "lvl=eror msg=\"Failed to get user\" error=\"database is locked\""], "grafana sqlite database locked by a stuck backup", "systemctl restart grafana-server"),
 ("nextcloud-maint", "php-fpm", "503 Service Unavailable", ["Nextcloud is in maintenance mode", "occ maintenance:mode --on left enabled"], "an upgrade left nextcloud in maintenance mode", "systemctl restart php8.2-fpm"),
 ("pihole-ftl", "pihole-FTL", "DNS queries timing out", ["FTL crashed!", "pihole-FTL.service: Main process exited, code=killed, status=11/SEGV"], "pihole FTL segfault", "systemctl restart pihole-FTL"),
 ("plex-transcoder", "plexmediaserver", "stream failed", ["Transcoder exit: child process exited with code 1", "Failed to open codec"], "plex transcoder stuck processes", "systemctl restart plexmediaserver"),
 ("home-assistant-zigbee", "home-assistant", "automation unavailable", ["Couldn't start Zigbee Home Automation: serial port /dev/ttyUSB0 busy", "zha: Error setting up entry"], "zigbee stick held by a zombie process", "docker restart homeassistant"),
 ("haproxy-backend-down", "haproxy", "503 Service Unavailable", ["backend web has no server available!", "Server web/app1 is DOWN, reason: Layer4 connection problem"], "haproxy backend health checks failing after app stop", "systemctl restart haproxy"),
 ("apache-maxclients", "apache2", "timeout after 48000ms", ["AH00161: server reached MaxRequestWorkers setting, consider raising the MaxRequestWorkers setting", "AH00484: server reached MaxRequestWorkers"], "apache ran out of workers under slowloris-like load", "systemctl restart apache2"),
 ("memcached-dead", "memcached", "session errors", ["memcached.service: Main process exited, code=killed, status=9/KILL", "SERVER_ERROR out of memory storing object"], "memcached killed", "systemctl restart memcached"),
 ("minio-disk", "minio", "upload failed", ["Storage resources are insufficient for the write operation", "disk path full: /data"], "minio data disk full", "/usr/local/lib/medic/clean_logs.sh minio"),
 ("ntp-drift", "chrony", "TLS errors: certificate not yet valid", ["System clock wrong by 3600.123 seconds", "chronyd.service: Deactivated"], "chrony stopped, clock drifted", "systemctl restart chrony"),
 ("vaultwarden-crash", "vaultwarden", "connect ECONNREFUSED 10.0.0.9:8080", ["thread 'main' panicked at 'Failed to connect to database'", "container vaultwarden exited with code 101"], "vaultwarden container exited after its database file moved", "docker restart vaultwarden"),
]

NEG = ("nginx", "connect ECONNREFUSED", ["nginx.service: Main process exited, code=exited, status=1/FAILURE"], "nginx stopped", "/usr/local/lib/medic/clean_logs.sh nginx",
       "logs were not the problem; a plain restart is enough")

with open("tests/fixtures/memory/past_incidents.jsonl", "w") as f:
    for i, (key, service, symptom, sig, cause, cmd) in enumerate(PAST):
        e = {"id": str(uuid.UUID(int=i + 1)), "service": service, "monitor": key, "symptom": symptom, "signature": sig,
             "root_cause": cause, "command": cmd, "outcome": "verified", "approved_by": "ops@example.org",
             "approved_at": "2026-10-01T12:00:00Z", "incident_id": None, "reason": None,
             "created_at": f"2026-10-{(i % 28) + 1:02d}T12:00:00Z"}
        f.write(json.dumps(e) + "\n")
    service, symptom, sig, cause, cmd, reason = NEG
    f.write(json.dumps({"id": str(uuid.UUID(int=1000)), "service": service, "monitor": "nginx-stopped", "symptom": symptom,
        "signature": sig, "root_cause": cause, "command": cmd, "outcome": "rejected", "approved_by": "ops@example.org",
        "approved_at": "2026-10-02T12:00:00Z", "incident_id": None, "reason": reason, "created_at": "2026-10-02T12:00:00Z"}) + "\n")

QUERIES = [
 ("nginx-stopped", "nginx", "connect ECONNREFUSED 10.0.0.5:443 nginx.service: Main process exited, code=exited, status=1/FAILURE Nov 23 01:02:03"),
 ("php-fpm-down", None, "502 Bad Gateway connect() to unix:/run/php/php8.2-fpm.sock failed (2: No such file or directory) while connecting to upstream"),
 ("disk-full-var-log", "nginx", "write() to \"/var/log/nginx/error.log\" failed (28: No space left on device)"),
 ("java-oom", None, "Out of memory: Killed process 9999 (java) total-vm:4194304kB; tomcat.service killed by the OOM killer"),
 ("container-crashloop", None, "container api is restarting (exit code 1) Error: Cannot find module '/app/dist/index.js'"),
 ("cert-expired", None, "SSL_do_handshake() failed certificate verify failed: certificate has expired"),
 ("pg-too-many-conns", "postgresql", "FATAL: sorry, too many clients already; remaining connection slots are reserved"),
 ("redis-maxmemory", None, "OOM command not allowed when used memory > 'maxmemory' used_memory_human:4.00G"),
 ("docker-daemon-dead", None, "Cannot connect to the Docker daemon at unix:///var/run/docker.sock"),
 ("apache-maxclients", None, "AH00161: server reached MaxRequestWorkers setting"),
 ("haproxy-backend-down", None, "Server web/app2 is DOWN, reason: Layer4 connection problem; backend web has no server available"),
 ("ntp-drift", None, "System clock wrong by 7200.5 seconds; chronyd.service: Deactivated"),
]
json.dump([{"expect_monitor": k, "service": s, "evidence": e} for k, s, e in QUERIES], open("tests/fixtures/memory/queries.json", "w"), indent=1)
print(len(PAST), "past incidents,", len(QUERIES), "queries")
