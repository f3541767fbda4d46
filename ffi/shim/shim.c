/* See shim.h. */
#include <stddef.h>
#include <string.h>
#include "shim.h"
#include <pthread.h>
#include <time.h>
#ifdef HAVE_CALLGRIND
#include <valgrind/callgrind.h>
#endif

int shim_rte_errno(void) { return rte_errno; }
unsigned shim_rte_lcore_id(void) { return rte_lcore_id(); }

uint64_t shim_rss_ip(void) { return RTE_ETH_RSS_IP; }
uint64_t shim_rss_ipv4(void) { return RTE_ETH_RSS_IPV4; }
uint64_t shim_rss_l3_src_only(void) { return RTE_ETH_RSS_L3_SRC_ONLY; }
uint64_t shim_tx_offload_mbuf_fast_free(void) { return RTE_ETH_TX_OFFLOAD_MBUF_FAST_FREE; }
unsigned shim_reta_group_size(void) { return RTE_ETH_RETA_GROUP_SIZE; }
uint32_t shim_mempool_f_no_iova_contig(void) { return RTE_MEMPOOL_F_NO_IOVA_CONTIG; }
uint16_t shim_mbuf_default_buf_size(void) { return RTE_MBUF_DEFAULT_BUF_SIZE; }
uint16_t shim_pktmbuf_headroom(void) { return RTE_PKTMBUF_HEADROOM; }

uint64_t shim_rdtsc(void) { return rte_rdtsc(); }

uint16_t shim_eth_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t shim_eth_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *shim_pktmbuf_alloc(struct rte_mempool *mp) { return rte_pktmbuf_alloc(mp); }
int shim_pktmbuf_alloc_bulk(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n)
{
	return rte_pktmbuf_alloc_bulk(mp, mbufs, n);
}
void shim_pktmbuf_free(struct rte_mbuf *m) { rte_pktmbuf_free(m); }
void shim_pktmbuf_free_bulk(struct rte_mbuf **mbufs, unsigned n) { rte_pktmbuf_free_bulk(mbufs, n); }
/*
 * The dataplane reads these rte_mbuf fields directly (dataplane::dpdk::mbuf, field offsets
 * as constants) instead of calling a shim function per packet. The build fails here if a
 * DPDK version moves them.
 */
_Static_assert(offsetof(struct rte_mbuf, buf_addr) == 0, "rte_mbuf.buf_addr moved");
_Static_assert(offsetof(struct rte_mbuf, data_off) == 16, "rte_mbuf.data_off moved");
_Static_assert(offsetof(struct rte_mbuf, nb_segs) == 20, "rte_mbuf.nb_segs moved");
_Static_assert(offsetof(struct rte_mbuf, port) == 22, "rte_mbuf.port moved");
_Static_assert(offsetof(struct rte_mbuf, pkt_len) == 36, "rte_mbuf.pkt_len moved");
_Static_assert(offsetof(struct rte_mbuf, data_len) == 40, "rte_mbuf.data_len moved");
_Static_assert(sizeof(((struct rte_mbuf *)0)->data_off) == 2 && sizeof(((struct rte_mbuf *)0)->nb_segs) == 2
	&& sizeof(((struct rte_mbuf *)0)->data_len) == 2 && sizeof(((struct rte_mbuf *)0)->buf_addr) == 8,
	"rte_mbuf field sizes changed");

uint32_t shim_pktmbuf_pkt_len(const struct rte_mbuf *m) { return m->pkt_len; }
uint16_t shim_pktmbuf_tailroom(const struct rte_mbuf *m) { return rte_pktmbuf_tailroom(m); }
uint16_t shim_pktmbuf_headroom_of(const struct rte_mbuf *m) { return rte_pktmbuf_headroom(m); }
uint8_t *shim_pktmbuf_append(struct rte_mbuf *m, uint16_t len) { return (uint8_t *)rte_pktmbuf_append(m, len); }
uint8_t *shim_pktmbuf_prepend(struct rte_mbuf *m, uint16_t len) { return (uint8_t *)rte_pktmbuf_prepend(m, len); }
uint8_t *shim_pktmbuf_adj(struct rte_mbuf *m, uint16_t len) { return (uint8_t *)rte_pktmbuf_adj(m, len); }
int shim_pktmbuf_trim(struct rte_mbuf *m, uint16_t len) { return rte_pktmbuf_trim(m, len); }
uint16_t shim_mbuf_port(const struct rte_mbuf *m) { return m->port; }
void shim_mbuf_set_port(struct rte_mbuf *m, uint16_t port) { m->port = port; }
uint32_t shim_mbuf_rss_hash(const struct rte_mbuf *m) { return m->hash.rss; }
int shim_mbuf_has_rss_hash(const struct rte_mbuf *m) { return (m->ol_flags & RTE_MBUF_F_RX_RSS_HASH) != 0; }

/*
 * rte_pktmbuf_pool_create() cannot take mempool flags; without hugepages the pool
 * must be created with RTE_MEMPOOL_F_NO_IOVA_CONTIG or every object lands at the
 * same page offset. This follows rte_pktmbuf_pool_create_by_ops() step by step.
 */
struct rte_mempool *shim_pktmbuf_pool_create(const char *name, unsigned n,
        unsigned cache_size, uint16_t data_room_size, int socket_id, unsigned flags)
{
	struct rte_pktmbuf_pool_private priv;
	struct rte_mempool *mp;
	unsigned elt_size = sizeof(struct rte_mbuf) + (unsigned)data_room_size;
	int ret;

	memset(&priv, 0, sizeof(priv));
	priv.mbuf_data_room_size = data_room_size;
	priv.mbuf_priv_size = 0;

	mp = rte_mempool_create_empty(name, n, elt_size, cache_size,
			sizeof(struct rte_pktmbuf_pool_private), socket_id, flags);
	if (mp == NULL)
		return NULL;
	ret = rte_mempool_set_ops_byname(mp, rte_mbuf_best_mempool_ops(), NULL);
	if (ret != 0) {
		rte_mempool_free(mp);
		rte_errno = -ret;
		return NULL;
	}
	rte_pktmbuf_pool_init(mp, &priv);
	ret = rte_mempool_populate_default(mp);
	if (ret < 0) {
		rte_mempool_free(mp);
		rte_errno = -ret;
		return NULL;
	}
	rte_mempool_obj_iter(mp, rte_pktmbuf_init, NULL);
	return mp;
}

unsigned shim_mempool_avail_count(const struct rte_mempool *mp) { return rte_mempool_avail_count(mp); }
unsigned shim_mempool_in_use_count(const struct rte_mempool *mp) { return rte_mempool_in_use_count(mp); }

unsigned shim_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n)
{
	return rte_ring_enqueue_burst(r, objs, n, NULL);
}
unsigned shim_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}
unsigned shim_ring_count(const struct rte_ring *r) { return rte_ring_count(r); }

#ifdef HAVE_CALLGRIND
int shim_running_on_valgrind(void) { return RUNNING_ON_VALGRIND; }
void shim_callgrind_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void shim_callgrind_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void shim_callgrind_zero(void) { CALLGRIND_ZERO_STATS; }
void shim_callgrind_dump_at(const char *reason) { CALLGRIND_DUMP_STATS_AT(reason); }
#else
int shim_running_on_valgrind(void) { return 0; }
void shim_callgrind_start(void) {}
void shim_callgrind_stop(void) {}
void shim_callgrind_zero(void) {}
void shim_callgrind_dump_at(const char *reason) { (void)reason; }
#endif

int shim_thread_cpu_clock(unsigned long thread, int *clock_id)
{
	clockid_t id;
	int r = pthread_getcpuclockid((pthread_t)thread, &id);
	if (r == 0)
		*clock_id = (int)id;
	return r;
}

uint64_t shim_clock_ns(int clock_id)
{
	struct timespec ts;
	if (clock_gettime((clockid_t)clock_id, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}
