import Foundation
import MapCore

/// One segment of the ground-truth panoptic images: a stuff class (all its pixels, instance 0) or a thing instance.
public struct PanopticSegment: Sendable, Equatable, Codable {
    /// Value in the panoptic image (1...; 0 = none).
    public var id: Int
    public var classID: Int
    /// Global instance id for things, 0 for stuff.
    public var instance: Int
    public var isThing: Bool

    public init(id: Int, classID: Int, instance: Int, isThing: Bool) {
        self.id = id; self.classID = classID; self.instance = instance; self.isThing = isThing
    }
    enum CodingKeys: String, CodingKey { case id, classID = "class", instance, isThing = "thing" }
}

/// The mapping panoptic segment id -> (class, instance, thing/stuff) of a scene (written as `gt/segments.json`).
/// Stuff classes get ids 1...S in vocabulary order; thing instance k gets id S + k.
public struct PanopticSegmentTable: Sendable, Equatable, Codable {
    public var segments: [PanopticSegment]

    public init(segments: [PanopticSegment]) { self.segments = segments }

    public init(room: SyntheticRoom) {
        var segs: [PanopticSegment] = []
        for id in room.vocabulary.stuffIDs {
            segs.append(PanopticSegment(id: segs.count + 1, classID: id, instance: 0, isThing: false))
        }
        let stuffCount = segs.count
        for o in room.objects {
            segs.append(PanopticSegment(id: stuffCount + o.instanceID, classID: o.classID, instance: o.instanceID,
                                        isThing: true))
        }
        segments = segs
    }

    public func segment(id: Int) -> PanopticSegment? { segments.first { $0.id == id } }

    /// The panoptic id of a (semantic, instance) label: the instance's segment for things, the class's for stuff.
    public func panopticID(semantic: Int, instance: Int) -> Int {
        if instance > 0 { return segments.first { $0.instance == instance }?.id ?? 0 }
        return segments.first { !$0.isThing && $0.classID == semantic }?.id ?? 0
    }

    public func jsonData() -> Data {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        return (try? enc.encode(self)) ?? Data()
    }
}
