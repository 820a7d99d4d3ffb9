import { z } from 'zod';

/** Topics of the pipeline: the agent publishes, the saver subscribes. */
export const TOPIC = {
  event: 'report/event',
  user: 'report/user',
  dead: 'report/dead',
} as const;

/**
 * Every report carries its id in the body: the saver stores under it, so a
 * redelivered message is stored once. It travels in the body rather than in a
 * header because MQTT 3.1.1 (and the embedded broker) carries no headers.
 */
const reportId = z.string().min(1).max(128);

/** Body of `report/event`: what PostReport receives. */
export const EventReport = z.object({
  reportId,
  eventName: z.string().min(1).max(200),
  content: z.string().max(64 * 1024),
});
export type EventReport = z.infer<typeof EventReport>;

/** Body of `report/user`: what PostUserReport receives. */
export const UserReport = z.object({
  reportId,
  userId: z.number().int().positive(),
  status: z.string().min(1).max(64),
});
export type UserReport = z.infer<typeof UserReport>;
