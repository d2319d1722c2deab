/*
 * Fixed-arity wrappers of libmicrohttpd's variadic calls, which Swift cannot import.
 * Nothing else lives here: all behaviour is in the Swift module MicroHTTP.
 */
#ifndef PBS_STANDBY_MHD_SHIM_H
#define PBS_STANDBY_MHD_SHIM_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/socket.h>
#include <microhttpd.h>

/* MHD_VERSION as a plain integer (0x00097500 for 0.9.75), so Swift can print it. */
static inline unsigned long pbs_mhd_version_number(void) { return (unsigned long) MHD_VERSION; }

/*
 * Starts a daemon bound to `addr` (IPv4 or IPv6; port 0 picks a free port).
 * When tls_key and tls_cert (PEM strings) are both non-NULL the daemon speaks TLS.
 */
static inline struct MHD_Daemon *
pbs_mhd_start(unsigned int flags, const struct sockaddr *addr,
              MHD_AccessHandlerCallback handler, void *handler_cls,
              MHD_RequestCompletedCallback completed, void *completed_cls,
              unsigned int thread_pool, unsigned int connection_limit,
              unsigned int connection_timeout_s, size_t connection_memory_limit,
              const char *tls_key, const char *tls_cert)
{
    if (tls_key != NULL && tls_cert != NULL) {
        return MHD_start_daemon(flags | MHD_USE_TLS, 0, NULL, NULL, handler, handler_cls,
            MHD_OPTION_SOCK_ADDR, addr,
            MHD_OPTION_NOTIFY_COMPLETED, completed, completed_cls,
            MHD_OPTION_THREAD_POOL_SIZE, thread_pool,
            MHD_OPTION_CONNECTION_LIMIT, connection_limit,
            MHD_OPTION_CONNECTION_TIMEOUT, connection_timeout_s,
            MHD_OPTION_CONNECTION_MEMORY_LIMIT, connection_memory_limit,
            MHD_OPTION_HTTPS_MEM_KEY, tls_key,
            MHD_OPTION_HTTPS_MEM_CERT, tls_cert,
            MHD_OPTION_END);
    }
    return MHD_start_daemon(flags, 0, NULL, NULL, handler, handler_cls,
        MHD_OPTION_SOCK_ADDR, addr,
        MHD_OPTION_NOTIFY_COMPLETED, completed, completed_cls,
        MHD_OPTION_THREAD_POOL_SIZE, thread_pool,
        MHD_OPTION_CONNECTION_LIMIT, connection_limit,
        MHD_OPTION_CONNECTION_TIMEOUT, connection_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, connection_memory_limit,
        MHD_OPTION_END);
}

/* The port the daemon is bound to (useful after binding port 0); 0 when unknown. */
static inline uint16_t pbs_mhd_bound_port(struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_BIND_PORT);
    return info != NULL ? info->port : 0;
}

/* The client's address of a connection (an IPv4 or IPv6 sockaddr); NULL when unknown. */
static inline const struct sockaddr *pbs_mhd_client_address(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    return info != NULL ? info->client_addr : NULL;
}

/* Number of open connections, idle keep-alive ones included. */
static inline unsigned int pbs_mhd_current_connections(struct MHD_Daemon *daemon)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info != NULL ? info->num_connections : 0;
}

#endif
