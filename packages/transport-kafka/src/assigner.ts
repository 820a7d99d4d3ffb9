import kafkajs, { type Assignment, type PartitionAssigner } from 'kafkajs';

const { AssignerProtocol } = kafkajs;

/**
 * Round robin per topic among the members subscribed to that topic. kafkajs'
 * own round robin hands every topic of the leader to every member, which breaks
 * a group whose members subscribe different topics (one group shared by
 * several `@Subscribe` methods of a service): partitions would go to members
 * that never read them.
 */
export const topicRoundRobin: PartitionAssigner = ({ cluster }) => ({
  name: 'KtransportTopicRoundRobin',
  version: 0,

  async assign({ members }) {
    const subscribers = new Map<string, string[]>();
    for (const { memberId, memberMetadata } of members) {
      for (const topic of AssignerProtocol.MemberMetadata.decode(memberMetadata)?.topics ?? []) {
        const list = subscribers.get(topic) ?? [];
        list.push(memberId);
        subscribers.set(topic, list);
      }
    }
    const assignment = new Map<string, Assignment>(members.map((m) => [m.memberId, {}]));
    let turn = 0;
    const byTopic = [...subscribers].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    for (const [topic, subscribed] of byTopic) {
      // The leader only tracks metadata of its own topics; learn the others'.
      if (cluster.findTopicPartitionMetadata(topic).length === 0) await cluster.addTargetTopic(topic);
      const ids = subscribed.sort();
      const partitions = cluster
        .findTopicPartitionMetadata(topic)
        .map((p) => p.partitionId)
        .sort((a, b) => a - b);
      for (const partition of partitions) {
        const id = ids[turn++ % ids.length];
        const target = id === undefined ? undefined : assignment.get(id);
        if (target === undefined) throw new Error(`topicRoundRobin: member ${id} of ${topic} is not in the group`);
        (target[topic] ??= []).push(partition);
      }
    }
    return [...assignment].map(([memberId, topics]) => ({
      memberId,
      memberAssignment: AssignerProtocol.MemberAssignment.encode({ version: 0, assignment: topics, userData: Buffer.alloc(0) }),
    }));
  },

  protocol({ topics }) {
    return { name: 'KtransportTopicRoundRobin', metadata: AssignerProtocol.MemberMetadata.encode({ version: 0, topics, userData: Buffer.alloc(0) }) };
  },
});
